// The broker core's facade: the server hands it frames, closed connections, finished writes
// and "now"; it decides who gets what, who is lost and what expires, and records what the
// server must do as effects. No sockets and no clock. Inside, one room per responsibility:
//   admission   (core/admission.hpp)  names, secrets, the back-off on guessing, and with
//               (core/accounts.hpp)   --users the logins and what each user may do
//   routing     (core/routing.hpp)    topics and subscribers
//   lifecycle   (core/lifecycle.hpp)  client states and their transitions, expiry
//   accounting  (core/accounting.hpp) queued bytes, bounds, caps, drops, slow consumers
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "pubsubx/core/accounting.hpp"
#include "pubsubx/core/admission.hpp"
#include "pubsubx/core/client.hpp"
#include "pubsubx/core/cluster_link.hpp"
#include "pubsubx/core/config.hpp"
#include "pubsubx/core/effects.hpp"
#include "pubsubx/core/lifecycle.hpp"
#include "pubsubx/core/persistence.hpp"
#include "pubsubx/core/routing.hpp"
#include "pubsubx/log.hpp"

namespace pubsubx {

// What the connection that sent a frame does next.
struct FrameResult {
    // await_name (cluster mode): the frame was a CONNECT whose name the cluster's registry must
    // settle first; the connection reads nothing more and hands the same CONNECT again later.
    // await_login (--users): the frame was a CONNECT whose password only the slow check can
    // tell (login_gate.hpp); the connection reads nothing more and hands it again later.
    enum class Next { read_more, close, await_name, await_login };
    Next next = Next::read_more;
    // With close: a frame to write after what is queued (without delimiter), or empty. Valid
    // until the next call into the broker (a string view keeps the per-frame result free).
    std::string_view error_frame;
    // With close: frames already encoded (delimiters included) to write before error_frame,
    // valid as long: the answers still owed to a client that left with DISCONNECT.
    std::string_view owed_frames;
};

// Whether the bytes right after a frame are its delimiter, as FrameSplitter guarantees for
// the frames it hands out. Then a PUBLISH's delivery frame is already encoded: the frame
// without its command word, up to and with the delimiter.
enum class FrameEnd { unknown, delimiter_follows };

class Broker {
  public:
    Broker(BrokerConfig config, Logger& logger);
    ~Broker();
    Broker(const Broker&) = delete;
    Broker& operator=(const Broker&) = delete;

    // Acts on one frame received on `connection`. `source` is where the connection comes from;
    // it matters only for a CONNECT (the secret back-off), so the server looks it up only for
    // a connection that has no client yet.
    FrameResult handle_frame(Connection& connection, std::string_view frame, TimePoint now,
                             const SourceAddress& source = {}, FrameEnd end = FrameEnd::unknown);
    // The connection ended without DISCONNECT: its client (if any) becomes lost.
    void connection_closed(Connection& connection, TimePoint now);
    // Moves the connection's queued frames into `out` for writing; they stay counted against
    // the client's bounds until write_completed.
    void take_outbound(Connection& connection, std::string& out);
    // The same with large frames not copied: each is placed among out's bytes in `shared`
    // (a gathered write), which must keep them until the write completes.
    void take_outbound(Connection& connection, std::string& out, SharedFrames& shared);
    // `socket_unsent` is what the socket still holds unsent or unacknowledged, asked only
    // while the client's queue overflows (Client::in_overflow): an overflow episode ends
    // only once that is small too.
    void write_completed(Connection& connection, TimePoint now, std::size_t socket_unsent = 0);
    // The server stops: the write in flight ended after `written` bytes of `buffer` (what
    // take_outbound gave). The messages not sent whole go back to the client's queue, so that
    // a durable store keeps them.
    void write_interrupted(Connection& connection, std::string_view buffer, std::size_t written);
    // Nothing is being written on the connection and its socket still holds `socket_unsent`
    // (the server asks now and then while the client's queue overflows, Client::in_overflow):
    // an overflow episode the last write left open may end.
    void socket_drained(Connection& connection, TimePoint now, std::size_t socket_unsent);
    // The connection went idle: its client's queue gives its buffer back.
    void release_idle_memory(Connection& connection);
    // Removes the lost clients whose retention period ended by `now` (the expiry timer).
    void expire_lost_clients(TimePoint now);
    // Publishes the broker's own message on `topic` (under `$SYS/`, which clients may not
    // publish to): routed like a client's, not counted as published. A subscriber it makes a
    // slow consumer is cut off at once, as after a frame.
    void publish_system(std::string_view topic, std::string_view data, TimePoint now);

    // A client the store kept (src/store/), before the server accepts connections: it is lost
    // from `now` on, with its subscriptions and queued messages. False if it could not be
    // kept as stored (a limit is lower now, or the retention period is 0): the store must then
    // be written anew from memory.
    bool recover(const RecoveredClient& stored, TimePoint now);
    // From now on the store hears of every change it must keep (core/persistence.hpp).
    void attach_persistence(Persistence* persistence);
    // New clients get ids above `id` (the highest the store has seen).
    void ids_start_after(std::uint64_t id) { lifecycle_.ids_start_after(id); }
    // Cluster mode (src/cluster/): from now on the link hears of interest, publishes and freed
    // names, and is asked before a name this node does not hold is admitted.
    void attach_cluster(ClusterLink* cluster);
    // A message another node published: delivered to the local subscribers only.
    void publish_from_cluster(std::string_view topic, std::string_view data, TimePoint now);
    // Another node asks for client `name` on behalf of a CONNECT with `secret` from `source`:
    // true if a CONNECT here would restore it or take it over. False if there is no such
    // client, or with `error_frame` set if the CONNECT would be refused (the secret back-off
    // counts the attempt as here). With --users a user's client is handed over at once: the
    // asking node has logged the user in already.
    bool may_hand_over(std::string_view name, std::string_view secret, const SourceAddress& source,
                       TimePoint now, std::string& error_frame);
    // The client leaves this node (a connected one loses its connection first) and its state
    // is returned (id 0: the receiving node numbers it), or null if there is no such client.
    std::optional<RecoveredClient> hand_over(std::string_view name, TimePoint now);
    // Removes client `name`, closing its connection if it has one: its name belongs to another
    // node now. False if there is no client of that name.
    bool evict_client(std::string_view name, std::string_view why);
    // A client another node handed over (id 0): lost here from `now` on, as recover() does,
    // and kept by the store (if one is attached) like any new client.
    bool adopt(const RecoveredClient& client, TimePoint now);
    // --users: from now on names in `table` log in with their password, and clients may
    // publish and subscribe only as their user's (or the anonymous) rights say. Every
    // client's subscriptions are checked at once (the store may have brought clients back).
    void enable_accounts(AccountTable table, bool allow_anonymous);
    // The users file was read again: rights change for everyone at once. Connected clients
    // that may not stay are closed, lost ones removed, and subscriptions no longer allowed
    // are ended (a lost client must not go on collecting what it may not read).
    struct AccountsChange {
        std::size_t clients_removed = 0;
        std::size_t subscriptions_ended = 0;
    };
    AccountsChange replace_accounts(AccountTable table);
    bool accounts_enabled() const { return accounts_ != nullptr; }
    // The password hash a CONNECT of `name` is checked against, or null if it is no user.
    const std::string* password_hash_of(std::string_view name) const;
    // The slow check of a CONNECT's password is done: a right one is remembered (the CONNECT
    // then goes through when handed again); a wrong one is counted as admission counts a
    // wrong secret, and its error frame returned.
    std::string password_checked(std::string_view name, std::string_view password_hash,
                                 std::string_view password, bool right, const SourceAddress& source,
                                 TimePoint now);
    // Mutual TLS with --tls-name-from-cert: the connection's certificate names the client of
    // the CONNECT it hands over next (the server has checked the name against it). With
    // --users that user logs in without its password.
    void vouch_for_next_connect(const Connection& connection) { vouched_ = &connection; }
    // Every client, connected or lost (for the store's snapshots).
    template <typename Visit>
    void for_each_client(Visit&& visit) const {
        lifecycle_.for_each_client(std::forward<Visit>(visit));
    }

    // The effects recorded since the last call, moved into `out` (cleared first). Taking an
    // arm_expiry is a promise to call expire_lost_clients at that time.
    void take_effects(Effects& out);
    bool has_effects() const { return !effects_.empty(); }
    // When the next lost client expires, if any is lost.
    std::optional<TimePoint> next_expiry() const { return lifecycle_.next_expiry(); }

    // Bytes held for all clients together, queued or in flight (bounded by the global cap).
    std::size_t total_queued_bytes() const { return accounting_.total_bytes(); }
    std::size_t lost_client_count() const { return lifecycle_.lost_count(); }
    std::size_t client_count() const { return lifecycle_.client_count(); }
    std::size_t topic_count() const { return routing_.topic_count(); }
    // Every client's subscriptions (topics and filters), connected and lost.
    std::size_t subscription_count() const { return routing_.subscription_count(); }
    std::size_t filter_count() const { return routing_.filter_count(); }
    const Client* find_client(std::string_view name) const { return lifecycle_.find(name); }
    const Topic* find_topic(std::string_view name) const { return routing_.find(name); }
    const BrokerStats& stats() const { return stats_; }
    const BrokerConfig& config() const { return config_; }
    // SIGHUP: the limits that may change while clients are connected take `limits`' values.
    // Each applies where it is next checked: a queue at its next message, a lost client's
    // retention from its loss on (a client lost before keeps its deadline), the count of
    // lost clients at the next loss. max_topic_levels stays: filters are indexed by it.
    void update_limits(const BrokerConfig& limits);
    // Walks every structure and returns a description of the first broken invariant (the
    // fuzzer and the tests call it), or an empty string. O(everything): not for the server.
    std::string check_consistency() const;

  private:
    enum class StoreKnows { yes, no };
    bool take_in(const RecoveredClient& client, TimePoint now, StoreKnows store_knows);
    FrameResult act_on_frame(Connection& connection, std::string_view frame, TimePoint now,
                             const SourceAddress& source, FrameEnd end);
    // The delivery frame of the publish being routed: the frame's own bytes when act_on_frame
    // found them (encoded_ otherwise, encoded now).
    std::string_view delivery_frame(std::string_view topic_name, std::string_view data);
    bool asked_to_close(const Connection& connection) const {
        return !effects_.close.empty() && asked_to_close_slow(connection);
    }
    bool asked_to_close_slow(const Connection& connection) const;
    FrameResult connect(Connection& connection, std::string_view name, std::string_view secret,
                        TimePoint now, const SourceAddress& source, bool vouched);
    bool topic_allowed(Client& client, std::string_view topic);
    bool filter_allowed(Client& client, std::string_view filter);
    std::size_t max_filter_levels() const;
    bool recoverable_filter(std::string_view filter) const;
    bool publish_topic_allowed(Client& client, std::string_view topic);
    bool may_publish(Client& from, const Topic* topic, std::string_view topic_name);
    void refuse_topic(Client& client, std::string_view topic, std::string_view what,
                      std::string_view error_frame, std::string_view detail = {});
    void subscribe(Client& client, std::string_view topic);
    void unsubscribe(Client& client, std::string_view topic);
    void publish(Client& from, std::string_view topic, std::string_view data, TimePoint now);
    void publish_among_filters(Client& from, std::string_view topic, std::string_view data,
                               TimePoint now);
    void count_publish(const Client& from, std::string_view topic, std::string_view data);
    // A large delivery frame in a buffer of its own, for every queue it goes to.
    SharedFrame share(std::string_view encoded);
    void deliver_to(const Topic& topic, std::string_view topic_name, std::string_view data,
                    TimePoint now);
    void deliver_to_all(const Topic* exact, const FilterTree::Matches& filters,
                        std::string_view topic_name, std::string_view data, TimePoint now);
    void send_error(Client& client, std::string_view error_frame);
    // --users: what the client may do (its user's rights, or the anonymous ones).
    const Rights& rights_of(const Client& client) const;
    bool permitted_to_publish(Client& from, std::string_view topic_name);
    void refuse_not_allowed(Client& client, std::string_view verb, std::string_view topic_name);
    void log_in(Client& client, std::string_view password);
    // Ends the subscriptions `rights` do not allow; how many.
    std::size_t end_forbidden_subscriptions(Client& client, const Rights& rights);
    // After a change of the users file: whether the client may stay, and with which rights.
    const Rights* rights_after_reload(Client& client, std::string& why_not);
    AccountsChange apply_accounts();
    void cut_off(TimePoint now);

    BrokerConfig config_;
    Logger& logger_;
    BrokerStats stats_;
    Effects effects_;
    Routing routing_;
    QueueAccounting accounting_;
    Lifecycle lifecycle_;
    AdmissionControl admission_;
    std::string encoded_;  // one publish's delivery frame, encoded once
    // While a client's PUBLISH is routed: its delivery frame within the frame read, or empty.
    std::string_view delivery_in_frame_;
    FilterTree::Matches matched_;   // the filters matching a $SYS topic
    std::uint64_t deliveries_ = 0;  // publishes routed through overlapping filters
    std::string refusal_;           // the error frame of the last refused CONNECT
    // The error frames still owed to a client that sent DISCONNECT.
    std::string owed_frames_;
    Persistence* persistence_ = nullptr;
    ClusterLink* cluster_ = nullptr;
    std::unique_ptr<Accounts> accounts_;
    const Connection* vouched_ = nullptr;  // vouch_for_next_connect, until that CONNECT
};

}  // namespace pubsubx
