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

struct BrokerConfig {
    // How long a lost client's subscriptions and queue are kept; zero keeps nothing.
    Clock::duration lost_timeout = std::chrono::seconds{60};
    std::size_t max_queue_bytes = 1024 * 1024;
};

struct BrokerStats {
    std::uint64_t published = 0;
    std::uint64_t delivered = 0;  // messages put into subscribers' queues
    std::uint64_t dropped = 0;    // frames dropped from full queues
    std::uint64_t clients_lost = 0;
    std::uint64_t clients_restored = 0;
    std::uint64_t clients_expired = 0;
};

class Client;
struct Topic;

// One network connection as the core sees it; the server's session implements it.
class Connection {
  public:
    Client* client() const { return client_; }
    // The attached client's outbound queue went from empty to non-empty.
    virtual void outbound_ready() = 0;

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
    Client(std::string name, std::size_t max_queue_bytes)
        : name_(std::move(name)), outbound_(max_queue_bytes) {}

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
    std::uint64_t loss_generation = 0;  // matches the lost-FIFO entry that may expire it
    std::uint64_t dropped_in_episode = 0;
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
};

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

    const Client* find_client(std::string_view name) const;
    const Topic* find_topic(std::string_view name) const;
    std::size_t client_count() const { return clients_.size(); }
    std::size_t topic_count() const { return topics_.size(); }
    const BrokerStats& stats() const { return stats_; }
    const BrokerConfig& config() const { return config_; }

  private:
    struct LostEntry {
        std::string name;
        TimePoint deadline;
        std::uint64_t generation;
    };

    FrameResult connect(Connection& connection, std::string_view name, TimePoint now);
    void restore(Connection& connection, Client& client);
    void subscribe(Client& client, std::string_view topic);
    void unsubscribe(Client& client, std::string_view topic);
    void publish(Client& from, std::string_view topic, std::string_view data);
    void deliver(Client& client, std::string_view encoded_frame);
    void remove_client(Client& client, std::string_view reason);
    void attach(Connection& connection, Client& client);

    BrokerConfig config_;
    Logger& logger_;
    std::unordered_map<std::string_view, std::unique_ptr<Client>> clients_;  // keys view names
    // Topics live in the map's nodes: one allocation per topic, and clients point at them.
    std::unordered_map<std::string, Topic, StringHash, std::equal_to<>> topics_;
    std::deque<LostEntry> lost_fifo_;  // deadlines ascend: every loss gets the same timeout
    std::string encoded_;              // one publish's delivery frame, encoded once
    BrokerStats stats_;
};

}  // namespace pubsubx
