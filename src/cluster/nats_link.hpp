// The cluster's one NATS connection (cnats). cnats runs its own threads: its callbacks only
// append to an inbound buffer and post into the io_context, which stays the single owner of
// everything else. Subscriptions are counted per subject, so that several topics or filters
// needing one subject share it. cnats's buffered publishing is kept (it flushes in its own
// thread; its send-as-soon-as-possible mode is several times slower).
#pragma once

#include <nats/nats.h>

#include <asio/io_context.hpp>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace pubsubx::cluster {

// cnats's text for `status`, with the detail of the last error on this thread if it has one.
std::string nats_error_text(natsStatus status);

// At exit, once every connection is closed: cnats's own threads and memory go too (else
// they would outlive main, and the leak checkers would say so).
void close_nats_library();

class NatsLink {
  public:
    // Data subjects carry messages (envelope.hpp); control subjects the cluster's own records.
    enum class Channel : char { data = 'd', control = 'c' };
    struct Inbound {
        Channel channel;
        std::string_view subject;  // control only
        std::string_view reply;
        std::string_view payload;
    };
    // Called on the io_context's thread.
    class Listener {
      public:
        virtual void on_inbound(const Inbound& inbound) = 0;
        // After a batch of on_inbound calls: a moment to carry out the core's effects once.
        virtual void on_inbound_done() = 0;
        virtual void on_connection_changed(bool connected) = 0;
        // Messages cnats dropped because this node did not take them fast enough.
        virtual void on_dropped(std::uint64_t messages) = 0;

      protected:
        ~Listener() = default;
    };

    NatsLink(asio::io_context& io, Listener& listener);
    ~NatsLink();
    NatsLink(const NatsLink&) = delete;
    NatsLink& operator=(const NatsLink&) = delete;

    // Connects, or keeps trying in the background if no server answers now. False (with
    // `error`) only for a bad setting, such as a malformed URL.
    bool connect(const std::vector<std::string>& servers, const std::string& name,
                 std::string& error);
    void close();
    bool connected() const { return connected_.load(std::memory_order_relaxed); }
    // Connected, and the server answers a ping within `timeout` (blocks that long at most).
    bool answers_within(std::chrono::milliseconds timeout) const;
    // For the worker thread's blocking calls (requests, flushes, key-value).
    natsConnection* connection() const { return connection_; }

    void subscribe(const std::string& subject, Channel channel);
    void unsubscribe(const std::string& subject);
    std::size_t subscription_count() const { return subscriptions_.size(); }
    // The largest message the NATS server takes (its max_payload; 1 MiB until connected).
    std::size_t max_payload() const;
    // False when cnats could not take it (closed, or its reconnect buffer is full).
    bool publish(const std::string& subject, std::string_view payload);
    bool publish_with_reply(const std::string& subject, const std::string& reply,
                            std::string_view payload);

  private:
    struct Tag {
        NatsLink* link;
        Channel channel;
    };
    struct Subscribed {
        natsSubscription* subscription = nullptr;
        std::size_t users = 0;
    };

    static void on_message(natsConnection*, natsSubscription*, natsMsg* message, void* closure);
    static void on_disconnected(natsConnection*, void* closure);
    static void on_reconnected(natsConnection*, void* closure);
    static void on_error(natsConnection*, natsSubscription*, natsStatus status, void* closure);
    void append_inbound(Channel channel, natsMsg* message);
    void drain_inbound();
    void count_dropped();

    asio::io_context& io_;
    Listener& listener_;
    natsConnection* connection_ = nullptr;
    std::atomic<bool> connected_{false};
    Tag data_tag_{this, Channel::data};
    Tag control_tag_{this, Channel::control};
    std::unordered_map<std::string, Subscribed> subscriptions_;
    std::uint64_t dropped_counted_ = 0;
    std::uint64_t dropped_closed_ = 0;  // by subscriptions closed since

    // Filled by cnats's delivery thread, taken whole by the event loop.
    std::mutex inbound_mutex_;
    std::string inbound_;
    std::uint64_t dropped_here_ = 0;  // past the bound, since the last drain
    bool drain_posted_ = false;
    std::string draining_;  // the event loop's side of the swap
};

}  // namespace pubsubx::cluster
