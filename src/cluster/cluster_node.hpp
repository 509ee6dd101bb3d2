// One node of a cluster (--cluster): several pubsubx-server nodes acting as one broker over
// NATS (docs/cluster.md). It stands between the broker core and the NATS link:
//  - fan-out: each topic or filter with a local subscriber (connected or lost) is a NATS
//    subscription, and is announced to the other nodes ("interest"), so that a local publish
//    goes to NATS only when another node wants it;
//  - names: a name this node does not hold is claimed in the registry (name_registry.hpp)
//    before its CONNECT goes on; a name another node holds is handed over from it;
//  - hand-over: the new owner subscribes first and buffers, the old one waits a short window
//    for stragglers, moves the name, and sends the client's state with the last sequence it
//    received from each node; the new owner keeps its buffered messages past those.
// Everything here runs on the event loop, but for the blocking calls on the worker thread.
#pragma once

#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "envelope.hpp"
#include "name_registry.hpp"
#include "nats_link.hpp"
#include "pubsubx/broker.hpp"
#include "pubsubx/cluster_figures.hpp"
#include "pubsubx/core/cluster_link.hpp"
#include "pubsubx/log.hpp"
#include "pubsubx/name_gate.hpp"
#include "remote_interest.hpp"
#include "worker.hpp"

namespace pubsubx::cluster {

struct ClusterSettings {
    std::vector<std::string> servers;  // nats://host:port
    std::string cluster = "pubsubx";
    std::string node;
    // A node that stops refreshing its lease for this long is gone: its names are free.
    std::chrono::milliseconds lease{10'000};
    // How long the old owner of a client waits for messages still on their way to it before
    // it hands the client over.
    std::chrono::milliseconds handover_window{50};
    std::chrono::milliseconds request_timeout{3'000};
};

using pubsubx::ClusterFigures;

class ClusterNode final : public ClusterLink, public NameGate, private NatsLink::Listener {
  public:
    ClusterNode(asio::io_context& io, Broker& broker, Logger& logger, ClusterSettings settings,
                std::function<void()> apply_effects);
    ~ClusterNode();
    ClusterNode(const ClusterNode&) = delete;
    ClusterNode& operator=(const ClusterNode&) = delete;

    // Connects to NATS (or keeps trying in the background); false for a bad setting.
    bool start(std::string& error);
    // A clean stop: the lease and the announced interest are given up.
    void stop();
    const ClusterFigures& figures();
    const ClusterSettings& settings() const { return settings_; }

    // ClusterLink (the broker core)
    void interest_added(std::string_view topic_or_filter) override;
    void interest_removed(std::string_view topic_or_filter) override;
    void published(std::string_view topic, std::string_view data) override;
    void client_removed(const Client& client) override;
    NameAdmission admit_name(const Connection& connection, std::string_view name,
                             bool held_here) override;
    // NameGate (the server)
    void settle_name(const Connection& connection, std::string name, std::string secret,
                     const SourceAddress& source, Done done) override;

  private:
    struct NameRequest {
        const Connection* connection;
        std::string name;
        std::string secret;
        SourceAddress source;
        Done done;
        int attempts = 0;
    };
    // A client coming to this node: its filters, and the messages for it that arrive meanwhile.
    struct IncomingHandover {
        std::vector<std::string> filters;
        struct Buffered {
            std::uint64_t origin;
            std::uint64_t sequence;
            std::string frame;  // encoded for the client
        };
        std::vector<Buffered> buffered;
        std::shared_ptr<NameRequest> request;  // the CONNECT waiting for it
        std::string owner;
        std::shared_ptr<asio::steady_timer> timeout;
        std::string state_parts;  // a large state, as its parts arrive
        std::uint64_t parts_received = 0;
    };
    // A client leaving this node for another.
    struct OutgoingHandover {
        std::string to_node;
        std::string secret;
        SourceAddress source;
        TimePoint expires;
    };

    // NatsLink::Listener
    void on_inbound(const NatsLink::Inbound& inbound) override;
    void on_inbound_done() override;
    void on_connection_changed(bool connected) override;
    void on_dropped(std::uint64_t messages) override;

    void on_batch(std::string_view payload);
    void on_message(const Envelope& message);
    void count_gap(std::uint64_t origin, std::string_view topic, std::uint64_t sent_before,
                   std::uint64_t count);
    void send_batch();
    void on_control(std::string_view subject, std::string_view reply, std::string_view payload);
    void buffer_for_handovers(std::uint64_t origin, std::uint64_t sequence, std::string_view topic,
                              std::string_view data);

    // Interest: this node's, counted (the core's topics and filters, plus hand-overs').
    void add_interest(const std::string& topic_or_filter);
    void remove_interest(const std::string& topic_or_filter);
    void announce(char op, const std::string& topic_or_filter);
    void send_announcements();
    void announce_all(std::uint64_t flags);
    void on_interest_record(std::string_view payload);
    const std::string& subject_of(std::string_view topic);

    // Joining, leases and liveness.
    void join();
    void on_joined();
    void start_heartbeat();
    void check_remote_nodes();
    void reclaim_names(std::vector<std::string> names);
    void verify_all_names();
    void evict(const std::string& name);
    bool lease_at_risk(TimePoint now) const;
    void lease_refreshed(TimePoint started);

    // Names.
    void claim(std::shared_ptr<NameRequest> request);
    void take_name(std::shared_ptr<NameRequest> request, std::uint64_t revision);
    void end_claiming(const std::string& name);
    void finish_claim(const std::shared_ptr<NameRequest>& request, std::string_view error_frame);
    void grant(const std::shared_ptr<NameRequest>& request, std::uint64_t revision);
    void ask_owner(std::shared_ptr<NameRequest> request, std::string owner, std::uint64_t revision);
    void on_take_timeout(std::uint64_t id);
    void on_take_reply(std::string_view id_text, std::string_view payload);
    void on_take_answer(std::shared_ptr<NameRequest> request, const std::string& owner,
                        std::string answer, std::uint64_t revision);
    void on_state_record(std::string_view payload);
    void on_state_part(std::string_view payload);
    bool send_state(const std::string& to, const std::string& name, const std::string& state);
    void on_state_answer(std::shared_ptr<NameRequest> request, std::string owner,
                         RecordReader& record);
    void end_incoming(const std::string& name);
    void on_take_request(std::string_view reply, std::string_view payload);
    void on_ready_request(std::string_view payload);
    void hand_over_now(std::string name, std::string reply, std::uint64_t new_revision);
    void expire_outgoing();

    std::string node_subject(std::string_view node, std::string_view what) const;
    // Runs `task` on the worker; `then` on the event loop with its result.
    template <typename Result>
    void run_on(Worker& worker, std::function<Result()> task, std::function<void(Result)> then);
    template <typename Result>
    void on_worker(std::function<Result()> task, std::function<void(Result)> then);

    asio::io_context& io_;
    Broker& broker_;
    Logger& logger_;
    ClusterSettings settings_;
    std::function<void()> apply_effects_;
    std::string prefix_;
    std::uint64_t incarnation_;
    NatsLink link_;
    NameRegistry registry_;
    Worker worker_;
    Worker lease_worker_;
    asio::steady_timer heartbeat_timer_;
    asio::steady_timer liveness_timer_;
    bool registry_ready_ = false;
    bool joined_once_ = false;
    bool joining_ = false;
    bool stopping_ = false;
    ClusterFigures figures_;

    std::unordered_map<std::string, std::size_t> local_interest_;
    std::vector<std::pair<char, std::string>> announcements_;  // not sent yet
    bool announce_posted_ = false;
    RemoteInterest remote_;
    std::unordered_map<std::uint64_t, std::string> remote_names_;  // incarnation -> node name
    std::unordered_map<std::string, std::string, StringHash, std::equal_to<>>
        subjects_;       // topic -> subject
    std::string batch_;  // local publishes on their way to NATS (envelope.hpp)
    std::string batch_subject_;
    bool batch_posted_ = false;
    std::uint64_t batch_next_sequence_ = 0;  // the number the batch's next message must have
    // Messages this node sent per subject, and what it expects next per origin and topic.
    std::unordered_map<std::string, std::uint64_t, StringHash, std::equal_to<>> sent_per_subject_;
    std::unordered_map<std::string, std::uint64_t> expected_;

    std::uint64_t sequence_ = 0;
    std::unordered_map<std::uint64_t, std::uint64_t> last_received_;  // origin -> sequence
    // The entry of the last message's origin: a run of messages from one node looks it up once.
    std::uint64_t last_origin_ = 0;
    std::uint64_t* last_slot_ = nullptr;
    std::optional<TimePoint> batch_now_;
    BatchHeader last_batch_;  // the last batch received (its copies by NATS are skipped)

    std::unordered_map<std::string, std::uint64_t> owned_;  // name -> revision of our claim
    std::unordered_map<const Connection*, std::string> grants_;
    std::unordered_map<std::string, std::size_t> claiming_;  // CONNECTs waiting, per name
    // Clients here whose names the registry must confirm before a CONNECT restores them (the
    // store brought them back, or this node was away from NATS long enough to lose its lease).
    std::unordered_set<std::string> unverified_;
    TimePoint lease_refreshed_at_{};         // when the last refresh that succeeded was sent
    TimePoint lease_refreshed_at_before_{};  // the refresh before that
    bool lease_in_doubt_ = false;            // at risk since: check every name once refreshed
    std::map<std::string, IncomingHandover> incoming_;
    std::unordered_map<std::string, OutgoingHandover> outgoing_;
    std::string handing_over_now_;  // the name whose removal is a hand-over (no release)
    // CONNECTs waiting for another node's answer to "take", by request id.
    struct PendingTake {
        std::shared_ptr<NameRequest> request;
        std::string owner;
        std::uint64_t revision = 0;
        std::shared_ptr<asio::steady_timer> timeout;
    };
    std::unordered_map<std::uint64_t, PendingTake> pending_takes_;
    std::uint64_t last_take_id_ = 0;
    std::string answer_prefix_;  // the subjects of those answers, before the id
};

}  // namespace pubsubx::cluster
