// The pieces every scenario shares: a client that does the CONNECT handshake, the payload
// format that carries publisher, sequence number and send time, the per-publisher order check,
// and the progress line.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "link.hpp"
#include "server_replies.hpp"

namespace pubsubx::bench {

// A connection that has said CONNECT <name> (CONNECT <name> <secret> when given a secret, which
// a client needs to be restored on another node of a cluster); messages after the reply go to
// on_message.
// ERROR frames after the reply (a refused SUBSCRIBE or PUBLISH: the connection stays open) are
// kept, not handed on, so that a scenario can stop and show the broker's own words.
class BenchClient {
  public:
    using OnMessage = std::function<void(std::string_view topic, std::string_view data)>;

    BenchClient(Loop& loop, const Endpoint& endpoint, std::string name,
                std::string_view secret = {});
    // Says DISCONNECT (best effort), so that the broker forgets this client instead of
    // keeping it as a lost client that would slow down the next scenario.
    ~BenchClient();
    BenchClient(const BenchClient&) = delete;
    BenchClient& operator=(const BenchClient&) = delete;

    Link& link() { return link_; }
    const std::string& name() const { return name_; }
    bool answered() const { return !reply_.empty(); }
    bool accepted() const;  // OK: Conn accepted or RESTORED
    bool restored() const;
    const std::string& reply() const { return reply_; }
    long errors() const { return errors_; }
    const std::string& first_error() const { return first_error_; }
    void on_message(OnMessage handler) { on_message_ = std::move(handler); }

  private:
    void on_frame(std::string_view frame);

    std::string name_;
    client::ServerReplies replies_;
    std::string reply_;
    long errors_ = 0;
    std::string first_error_;
    OnMessage on_message_;
    Link link_;
};

// Connects all clients and waits for every CONNECT reply; false on timeout or a refusal.
bool connect_all(Loop& loop, std::vector<std::unique_ptr<BenchClient>>& clients,
                 std::chrono::milliseconds timeout);

// The first ERROR frame any of `clients` received after its CONNECT reply, or "".
std::string first_error(const std::vector<std::unique_ptr<BenchClient>>& clients);

// A name unique to this bench process: "bench-<pid>-<role><index>" (no index when < 0).
std::string bench_name(std::string_view role, long index = -1);

// Payloads: "<publisher>:<sequence>:<send time ns>", numbers in hex, padded with '.' to the
// requested size (longer when the size is too small to hold the numbers; 16 bytes hold a
// latency run of a minute). Warm-up probes start with '~'.
void append_payload(std::string& out, int publisher, long sequence, std::int64_t sent_ns,
                    std::size_t size);
struct Payload {
    bool probe = false;
    int publisher = -1;  // -1: not a payload of ours
    long sequence = 0;
    std::int64_t sent_ns = 0;
};
Payload parse_payload(std::string_view data);
// CLOCK_MONOTONIC in nanoseconds since this process first asked.
std::int64_t now_ns();

// Expected sequence numbers per publisher at one subscriber.
class OrderCheck {
  public:
    explicit OrderCheck(int publishers) : next_(static_cast<std::size_t>(publishers), 0) {}
    void accept(const Payload& payload);
    long delivered() const { return delivered_; }
    long delivered_from(int publisher) const { return next_[static_cast<std::size_t>(publisher)]; }
    long out_of_order() const { return out_of_order_; }
    long duplicates() const { return duplicates_; }
    long unrecognised() const { return unrecognised_; }

  private:
    std::vector<long> next_;
    long delivered_ = 0, out_of_order_ = 0, duplicates_ = 0, unrecognised_ = 0;
};

// "  throughput: 41% (412,000 of 1,000,000)" on stderr, at most once a second, and only
// once a run has lasted a second.
class Progress {
  public:
    explicit Progress(std::string label);
    ~Progress();
    void update(long done, long total);

  private:
    std::string label_;
    BenchClock::time_point started_ = BenchClock::now();
    BenchClock::time_point last_{};
    bool printed_ = false;
};

std::string with_thousands(long value);

}  // namespace pubsubx::bench
