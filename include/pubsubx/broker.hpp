// The broker core: clients by name, topics, subscriptions both ways and the lost-client
// lifecycle. No sockets and no clock: the server hands in frames and "now", and the core puts
// encoded frames into each client's OutboundQueue and tells its Connection that data is ready.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "pubsubx/log.hpp"
#include "pubsubx/outbound_queue.hpp"

namespace pubsubx {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;

// The core's limits (docs/robustness.md). For every count and size, 0 means "no limit".
struct BrokerConfig {
    // How long a lost client's subscriptions and queue are kept; zero keeps nothing.
    Clock::duration lost_timeout = std::chrono::seconds{60};
    std::size_t max_queue_bytes = 1024 * 1024;               // per client; the oldest are dropped
    std::size_t max_total_queue_bytes = 1024 * 1024 * 1024;  // over all clients
    std::size_t max_topics_per_client = 10'000;
    std::size_t max_topic_length = 1024;
    std::size_t max_lost_clients = 100'000;  // beyond it the longest-lost one is removed
    // A connected client whose queue overflows for this long is cut off (it becomes lost);
    // zero: never.
    Clock::duration slow_consumer_grace = std::chrono::seconds{10};
    // Refuse CONNECTs without a secret.
    bool require_secret = false;
};

struct BrokerStats {
    std::uint64_t published = 0;
    std::uint64_t delivered = 0;           // messages put into subscribers' queues
    std::uint64_t dropped = 0;             // frames dropped from full queues, for any reason
    std::uint64_t dropped_global_cap = 0;  // of those, dropped because of the global cap
    std::uint64_t clients_lost = 0;
    std::uint64_t clients_restored = 0;
    std::uint64_t clients_expired = 0;
    std::uint64_t lost_clients_evicted = 0;  // removed early: too many lost clients
    std::uint64_t slow_consumers_cut = 0;
    std::uint64_t sessions_taken_over = 0;
    std::uint64_t auth_failures = 0;
    std::uint64_t topics_refused = 0;  // over the topic length or per-client topic limit
    // First frames that were not a valid CONNECT (garbage, a bad name or secret).
    std::uint64_t bad_connects = 0;
};

class Client;
struct Topic;

// One network connection as the core sees it; the server's session implements it.
class Connection {
  public:
    Client* client() const { return client_; }
    // The attached client's outbound queue went from empty to non-empty.
    virtual void outbound_ready() = 0;
    // The core detached this connection's client (a slow consumer, or a takeover by a
    // connection with the client's secret): close the connection without telling the core.
    virtual void close_requested(std::string_view reason) = 0;

  protected:
    Connection() = default;
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;
    ~Connection() = default;

  private:
    friend class Broker;
    Client* client_ = nullptr;
};

// A client by name. The record outlives its connections: while lost it keeps its
// subscriptions and its queue, and a restore only re-attaches a connection.
class Client {
  public:
    explicit Client(std::string name) : name_(std::move(name)) {}

    const std::string& name() const { return name_; }
    bool connected() const { return connection_ != nullptr; }
    const std::vector<Topic*>& topics() const { return topics_; }
    OutboundQueue& outbound() { return outbound_; }

  private:
    friend class Broker;

    std::string name_;
    Connection* connection_ = nullptr;
    std::vector<Topic*> topics_;  // in subscription order: the order RESTORED lists them
    OutboundQueue outbound_;
    std::unique_ptr<const std::string> secret_;  // null: anyone may resume this client
    std::uint64_t dropped_in_episode = 0;
    TimePoint overflow_since_{};  // when the current run of drops began
    // Matches the lost-FIFO entry that may expire it (wrapping around is harmless: an entry
    // 2^32 losses old has long been popped).
    std::uint32_t loss_generation = 0;
    std::uint32_t failed_attempts_ = 0;  // CONNECTs with a wrong secret since the last success
};

struct Topic {
    std::string_view name;  // views the key of the broker's topic map, stable while it exists
    std::vector<Client*> subscribers;
};

// Lets the maps keyed by std::string be searched with a string_view, without a copy.
struct StringHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view text) const noexcept {
        return std::hash<std::string_view>{}(text);
    }
};

// What the server does after handing a frame to the core.
struct FrameResult {
    enum class Next { read_more, close };
    Next next = Next::read_more;
    // A frame to write before closing (without delimiter), or empty.
    std::string_view error_frame;
    // How long to wait before answering and closing (slows down guessing secrets).
    Clock::duration close_delay{};
};

// "2.5 s": a duration as the logs and error frames print it.
std::string seconds_text(Clock::duration duration);

// The counters as one `name=value ...` line, for logs and scripts.
std::string describe(const BrokerStats& stats);

class Broker {
  public:
    Broker(BrokerConfig config, Logger& logger);
    ~Broker();
    Broker(const Broker&) = delete;
    Broker& operator=(const Broker&) = delete;

    // Acts on one frame received on `connection`.
    FrameResult handle_frame(Connection& connection, std::string_view frame, TimePoint now);
    // The connection ended without DISCONNECT: its client (if any) becomes lost.
    void connection_closed(Connection& connection, TimePoint now);
    // Moves the connection's queued frames into `out` for writing.
    void take_outbound(Connection& connection, std::string& out);

    // Removes the lost clients whose retention period ended by `now`.
    void expire_lost_clients(TimePoint now);
    // When the next lost client expires, if any is lost.
    std::optional<TimePoint> next_expiry() const;

    // Bytes queued for all clients together (bounded by max_total_queue_bytes).
    std::size_t total_queued_bytes() const { return total_queued_bytes_; }
    std::size_t lost_client_count() const { return lost_count_; }
    const Client* find_client(std::string_view name) const;
    // Walks every structure and returns a description of the first broken invariant (the
    // fuzzer and the tests call it), or an empty string. O(everything): not for the server.
    std::string check_consistency() const;
    const Topic* find_topic(std::string_view name) const;
    std::size_t client_count() const { return clients_.size(); }
    std::size_t topic_count() const { return topics_.size(); }
    const BrokerStats& stats() const { return stats_; }
    const BrokerConfig& config() const { return config_; }

  private:
    struct LostEntry {
        std::string name;
        TimePoint deadline;
        std::uint32_t generation;
    };

    FrameResult act_on_frame(Connection& connection, std::string_view frame, TimePoint now);
    FrameResult connect(Connection& connection, std::string_view name, std::string_view secret,
                        TimePoint now);
    void add_client(Connection& connection, std::string_view name, std::string_view secret,
                    TimePoint now);
    FrameResult connect_existing(Connection& connection, Client& client, std::string_view secret,
                                 TimePoint now);
    FrameResult refuse_secret(Client& client, bool secret_missing);
    void restore(Connection& connection, Client& client, TimePoint now);
    void take_over(Connection& connection, Client& client, TimePoint now);
    bool topic_allowed(Client& client, std::string_view topic, TimePoint now);
    void subscribe(Client& client, std::string_view topic, TimePoint now);
    void unsubscribe(Client& client, std::string_view topic);
    void publish(Client& from, std::string_view topic, std::string_view data, TimePoint now);
    void deliver(Client& client, std::string_view encoded_frame, TimePoint now);
    std::size_t lost_clients_share_of_cap() const;
    std::size_t room_under_global_cap(std::size_t own_bytes, bool lost) const;
    void count_drops(Client& client, std::size_t dropped, bool capped_by_total, TimePoint now);
    void send_error(Client& client, std::string_view error_frame, TimePoint now);
    void cut_off_slow_consumers(TimePoint now);
    void become_lost(Client& client, TimePoint now);
    Client* pop_longest_lost(std::optional<TimePoint> due_by);
    void remove_longest_lost();
    void remove_client(Client& client, std::string_view reason);
    void attach(Connection& connection, Client& client);
    void detach(Client& client);

    BrokerConfig config_;
    std::size_t queue_bound_;  // config_.max_queue_bytes, with 0 (no limit) as the largest size
    Logger& logger_;
    std::unordered_map<std::string_view, std::unique_ptr<Client>> clients_;  // keys view names
    // Topics live in the map's nodes: one allocation per topic, and clients point at them.
    std::unordered_map<std::string, Topic, StringHash, std::equal_to<>> topics_;
    std::deque<LostEntry> lost_fifo_;  // deadlines ascend: every loss gets the same timeout
    std::size_t lost_count_ = 0;       // clients lost now (the FIFO also has stale entries)
    std::size_t total_queued_bytes_ = 0;
    std::size_t lost_queued_bytes_ = 0;    // the part of total_queued_bytes_ lost clients hold
    bool global_cap_reached_ = false;      // for one log line per episode
    std::vector<Client*> slow_consumers_;  // found during a fan-out, cut off after it
    std::string encoded_;                  // one publish's delivery frame, encoded once
    BrokerStats stats_;
};

}  // namespace pubsubx
