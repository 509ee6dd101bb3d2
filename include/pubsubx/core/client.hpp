// The records the core keeps: a client by name, its subscriptions, and the connection it is
// attached to while connected. Plain data; the rooms of the core (routing, accounting,
// lifecycle, admission) change them, each its own fields.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "pubsubx/core/secret_digest.hpp"
#include "pubsubx/outbound_queue.hpp"

namespace pubsubx {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;

class Client;
struct Topic;
class Broker;
class Lifecycle;
class Routing;
class QueueAccounting;
class AdmissionControl;

// Where a connection comes from: an IPv6 address (IPv4 as ::ffff:a.b.c.d), without the port.
// The secret back-off is kept per source (docs/robustness.md).
struct SourceAddress {
    std::array<std::uint8_t, 16> bytes{};

    static SourceAddress ipv4(std::uint32_t host_order);
    bool operator==(const SourceAddress&) const = default;
    bool is_ipv4() const;  // an IPv4-mapped address
    // "127.0.0.1" or "2001:db8::1" (shortened only by dropping leading zeros).
    std::string text() const;
};

// One network connection as the core sees it. The server's session derives from it; the core
// never calls into it: what the connection must do comes back as effects (effects.hpp).
class Connection {
  public:
    Client* client() const { return client_; }

  protected:
    Connection() = default;
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;
    ~Connection() = default;

  private:
    friend class Lifecycle;
    Client* client_ = nullptr;  // null while pending (no CONNECT yet) and once detached
};

// A client has a name from its CONNECT on; before that its connection is pending. It changes
// state only through Lifecycle, which does all the accounting of each edge.
enum class ClientState : std::uint8_t {
    connected,  // attached to a connection
    lost,       // the connection ended without DISCONNECT: kept until its deadline
    removed,    // DISCONNECT, expiry or eviction: about to be destroyed
};

std::string_view state_name(ClientState state);

// One subscription of a client: the topic, and where the client sits among its subscribers,
// so that leaving a topic is O(1) however many subscribers it has.
struct Subscription {
    Topic* topic;
    std::uint32_t slot;  // index in topic->subscribers
};

struct Subscriber {
    Client* client;
    std::uint32_t subscription;  // index in client->subscriptions()
};

// The longest topic name the broker takes, whatever --max-topic-length says (Topic keeps its
// length in 32 bits).
inline constexpr std::size_t kLongestTopicName = UINT32_MAX;

// A topic or a wildcard filter that has subscribers.
struct Topic {
    // The name views the key of the topic map, stable while the topic exists. A pointer and a
    // 32-bit length rather than a string_view: with the flags in the same word, a map node of
    // an idle client's topic fits a smaller allocator size class (docs/performance.md).
    std::string_view name() const { return {name_data, name_size}; }
    void set_name(std::string_view name) {
        name_data = name.data();
        name_size = static_cast<std::uint32_t>(name.size());
    }

    const char* name_data = nullptr;
    std::uint32_t name_size = 0;
    bool is_filter = false;  // has a wildcard level: it is in the filter tree too
    // Neither a filter nor under `$SYS`: a PUBLISH to a topic that has subscribers needs no
    // check of its own, it was checked when the topic was created.
    bool open_to_publish = true;
    std::vector<Subscriber> subscribers;
};

// What the lifecycle keeps of a lost client: the list of these is in order of loss, which is
// also the order of deadlines (every loss gets the same retention period).
struct LostRecord {
    Client* client;
    std::uint64_t loss_id;  // broker-wide, ascending: names one loss of one client
    TimePoint lost_at;
    TimePoint deadline;
    bool holds_bytes = false;  // listed among the lost clients that can give up queued bytes
    std::list<Client*>::iterator holder;
};

// What a client that has a secret keeps; most clients have none, and pay one pointer.
struct Rights;
struct Credentials {
    SecretDigest secret;
    SourceAddress trusted_source;  // where its last successful CONNECT came from
    // With --users: the rights of the user it logged in as (its name's); null: anonymous.
    std::shared_ptr<const Rights> rights = nullptr;
};

// A client by name. The record outlives its connections: while lost it keeps its
// subscriptions and its queue, and a restore only re-attaches a connection.
class Client {
  public:
    Client(std::string name, std::uint64_t id) : name_(std::move(name)), id_(id) {}

    const std::string& name() const { return name_; }
    // Never reused by this broker or the store it loaded: names the client's record there.
    std::uint64_t id() const { return id_; }
    const Credentials* credentials() const { return credentials_.get(); }
    ClientState state() const { return state_; }
    bool connected() const { return state_ == ClientState::connected; }
    Connection* connection() const { return connected() ? connection_ : nullptr; }
    const std::vector<Subscription>& subscriptions() const { return subscriptions_; }
    const OutboundQueue& outbound() const { return outbound_; }
    // Bytes taken for the write in flight: still held for this client until it completes.
    std::size_t in_flight_bytes() const { return in_flight_bytes_; }
    std::size_t held_bytes() const { return outbound_.size() + in_flight_bytes_; }
    // Message bytes held, queued or in flight: what max_queue_bytes bounds.
    std::size_t held_message_bytes() const {
        return outbound_.message_bytes() + in_flight_bytes_ - in_flight_control_bytes_;
    }
    // In an overflow episode: messages were dropped and it has not caught up since.
    bool in_overflow() const { return dropped_in_episode_ > 0; }
    const LostRecord* lost_record() const {
        return state_ == ClientState::lost ? &*lost_ : nullptr;
    }

  private:
    friend class Lifecycle;
    friend class Routing;
    friend class QueueAccounting;
    friend class AdmissionControl;
    friend class Broker;

    std::string name_;
    std::uint64_t id_;
    // What only one state needs. One word for both keeps the record of an idle client within
    // a smaller allocator size class (docs/performance.md: memory per idle connection).
    union {
        Connection* connection_ = nullptr;      // while connected; null once detached
        std::list<LostRecord>::iterator lost_;  // while lost
    };
    std::vector<Subscription> subscriptions_;  // in subscription order: RESTORED lists them so
    OutboundQueue outbound_;
    std::size_t in_flight_bytes_ = 0;
    std::unique_ptr<Credentials> credentials_;  // null: anyone may resume this client
    TimePoint overflow_since_{};                // first drop of the current overflow episode
    // The last publish delivered to this client: a client whose filters overlap gets a
    // message once.
    std::uint64_t last_delivery_ = 0;
    std::uint32_t dropped_in_episode_ = 0;
    std::uint32_t in_flight_control_bytes_ = 0;  // the control frames in in_flight_bytes_
    // The accept or RESTORED reply still queued: it answers the CONNECT and does not count
    // as a backlog of unread error frames.
    std::uint32_t queued_reply_bytes_ = 0;
    ClientState state_ = ClientState::connected;
    bool listed_slow_ = false;  // waiting to be cut off as a slow consumer
    // A write that completes with drops since its start did not catch up.
    bool dropped_since_write_start_ = false;
};

// Lets the maps keyed by std::string be searched with a string_view, without a copy.
struct StringHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view text) const noexcept {
        return std::hash<std::string_view>{}(text);
    }
};

}  // namespace pubsubx
