// pubsubx-nats-pair: what nats-server itself delivers between two plain NATS clients, the
// baseline of bench/cluster's cross-node figures. One publisher connection and one subscriber
// connection of the official C client (cnats); the publisher sends N messages of S bytes as
// fast as cnats buffers them, and the rate runs from the first publish to the last receipt.
// Payloads and checks are pubsubx-bench's (bench_client.hpp), and so are the figures' names.
#include <nats/nats.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench_client.hpp"
#include "pubsubx/version.hpp"
#include "scenarios.hpp"

namespace {

using namespace pubsubx::bench;
using namespace std::chrono_literals;

struct PairOptions {
    std::string url = "nats://127.0.0.1:4222";
    long messages = 1'000'000;
    std::size_t size = 16;  // payload bytes
    std::string subject;    // empty: one of the run's own
    std::chrono::seconds timeout{60};
};

// cnats reports failures as a status; the set-up's failures end the run (exit code 2, as
// pubsubx-bench does for a broker it cannot reach).
void require(natsStatus status, const std::string& what) {
    if (status != NATS_OK) {
        throw std::runtime_error(what + ": " + natsStatus_GetText(status));
    }
}

struct OptionsDeleter {
    void operator()(natsOptions* options) const { natsOptions_Destroy(options); }
};
struct ConnectionDeleter {
    void operator()(natsConnection* connection) const { natsConnection_Destroy(connection); }
};
struct SubscriptionDeleter {
    void operator()(natsSubscription* subscription) const {
        natsSubscription_Destroy(subscription);
    }
};
using Connection = std::unique_ptr<natsConnection, ConnectionDeleter>;
using Subscription = std::unique_ptr<natsSubscription, SubscriptionDeleter>;

// No reconnect: a connection the server closes (a slow consumer, say) must show as losses,
// not be hidden by a reconnect that resubscribes. Publishing is buffered (cnats's default, not
// send-asap): cnats writes when its buffer fills or its flusher runs.
Connection connect(const std::string& url, const std::string& name) {
    natsOptions* raw = nullptr;
    require(natsOptions_Create(&raw), "natsOptions_Create");
    const std::unique_ptr<natsOptions, OptionsDeleter> options{raw};
    require(natsOptions_SetURL(raw, url.c_str()), "bad url " + url);
    require(natsOptions_SetName(raw, name.c_str()), "natsOptions_SetName");
    require(natsOptions_SetAllowReconnect(raw, false), "natsOptions_SetAllowReconnect");
    require(natsOptions_SetSendAsap(raw, false), "natsOptions_SetSendAsap");
    natsConnection* connection = nullptr;
    require(natsConnection_Connect(&connection, raw), "cannot connect to " + url);
    return Connection{connection};
}

// What the subscription's callback, on cnats's delivery thread, shares with the main thread.
// `check` belongs to the delivery thread until nats_CloseAndWait has stopped it.
struct Receiver {
    explicit Receiver(long expected) : expected(expected) {}
    const long expected;
    OrderCheck check{1};
    std::atomic<long> received{0};
    std::mutex mutex;
    std::condition_variable all_in;
    bool done = false;  // under mutex
    BenchClock::time_point last{};
};

void on_message(natsConnection*, natsSubscription*, natsMsg* message, void* closure) {
    Receiver& receiver = *static_cast<Receiver*>(closure);
    receiver.check.accept(parse_payload(
        {natsMsg_GetData(message), static_cast<std::size_t>(natsMsg_GetDataLength(message))}));
    natsMsg_Destroy(message);
    if (receiver.received.fetch_add(1, std::memory_order_relaxed) + 1 == receiver.expected) {
        const auto now = BenchClock::now();
        const std::lock_guard lock{receiver.mutex};
        receiver.last = now;
        receiver.done = true;
        receiver.all_in.notify_one();
    }
}

// Until every message is in, no progress for 5 s, or the timeout; the problem, if any, in
// pubsubx-bench's words.
std::string wait_for_all(Receiver& receiver, BenchClock::time_point started,
                         std::chrono::seconds timeout, const std::string& label) {
    Progress progress{label};
    long last_count = -1;
    auto last_progress = BenchClock::now();
    std::unique_lock lock{receiver.mutex};
    while (!receiver.all_in.wait_for(lock, 100ms, [&] { return receiver.done; })) {
        const long count = receiver.received.load(std::memory_order_relaxed);
        const auto now = BenchClock::now();
        if (count != last_count) {
            last_count = count;
            last_progress = now;
        } else if (now - last_progress > 5s) {
            return "stalled for 5 s";
        }
        if (now - started > timeout) {
            return "timed out";
        }
        progress.update(count, receiver.expected);
    }
    return {};
}

Result run_pair(const PairOptions& options) {
    Result result;
    result.scenario = "nats pair 1->1, " + std::to_string(options.size) + " B";
    const std::string subject =
        options.subject.empty() ? "bench.pair." + std::to_string(getpid()) : options.subject;
    Receiver receiver{options.messages};
    long published = 0;
    std::int64_t dropped = 0;
    double publish_seconds = 0, seconds = 0;
    bool subscriber_open = true;
    {
        const Connection subscriber = connect(options.url, "pubsubx-nats-pair sub");
        const Connection publisher = connect(options.url, "pubsubx-nats-pair pub");
        natsSubscription* raw = nullptr;
        require(natsConnection_Subscribe(&raw, subscriber.get(), subject.c_str(), on_message,
                                         &receiver),
                "cannot subscribe to " + subject);
        const Subscription subscription{raw};
        // cnats drops messages beyond 65,536 pending by default: no limit, so that the
        // client's own queue never loses what the server delivered.
        require(natsSubscription_SetPendingLimits(raw, -1, -1),
                "natsSubscription_SetPendingLimits");
        // The server has handled the SUB once the subscriber's PING is answered.
        require(natsConnection_Flush(subscriber.get()), "flushing the subscription");

        std::string payload;
        const auto started = BenchClock::now();
        for (; published < options.messages; ++published) {
            payload.clear();
            append_payload(payload, 0, published, 0, options.size);
            const natsStatus status = natsConnection_Publish(
                publisher.get(), subject.c_str(), payload.data(), static_cast<int>(payload.size()));
            if (status != NATS_OK) {
                fail(result, std::string{"publish failed: "} + natsStatus_GetText(status));
                break;
            }
        }
        // The server has read every PUBLISH once the publisher's PING is answered.
        const auto timeout_ms = std::chrono::milliseconds{options.timeout}.count();
        if (const natsStatus status = natsConnection_FlushTimeout(publisher.get(), timeout_ms);
            status != NATS_OK) {
            fail(result,
                 std::string{"the publisher's flush failed: "} + natsStatus_GetText(status));
        }
        publish_seconds = std::chrono::duration<double>(BenchClock::now() - started).count();
        if (const std::string problem =
                wait_for_all(receiver, started, options.timeout, result.scenario);
            !problem.empty()) {
            fail(result, problem);
        }
        {
            const std::lock_guard lock{receiver.mutex};
            const auto end = receiver.done ? receiver.last : BenchClock::now();
            seconds = std::chrono::duration<double>(end - started).count();
        }
        natsSubscription_GetDropped(raw, &dropped);
        subscriber_open = natsConnection_Status(subscriber.get()) == NATS_CONN_STATUS_CONNECTED;
    }
    // Every cnats thread has stopped: the delivery thread no longer touches `receiver`.
    nats_CloseAndWait(0);

    const long delivered = receiver.check.delivered();
    add_rates(result, published, publish_seconds, delivered, seconds, options.size);
    add_checks(result, options.messages, {receiver.check});
    add(result, "dropped", static_cast<double>(dropped),
        with_thousands(static_cast<long>(dropped)));
    if (dropped != 0) {
        fail(result, "cnats dropped messages at the subscriber");
    }
    if (!subscriber_open) {
        fail(result, "the server closed the subscriber's connection (a slow consumer?)");
    }
    return result;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{
        "pubsubx-nats-pair: what nats-server delivers between two cnats clients, one publisher "
        "and one subscriber, as a baseline for pubsubx-bench's figures. Start nats-server first."};
    app.set_version_flag("--version", std::string{"pubsubx-nats-pair "} + pubsubx::kVersion);
    PairOptions options;
    int timeout_seconds = 60;
    bool json = false;
    app.add_option("-u,--url", options.url, "NATS server")->capture_default_str();
    app.add_option("-n,--msgs", options.messages, "Messages")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    app.add_option("-s,--size", options.size, "Payload bytes")->capture_default_str();
    app.add_option("--subject", options.subject, "Subject (default: one of the run's own)");
    app.add_option("--timeout", timeout_seconds, "Seconds the run may take")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    app.add_flag("--json", json, "One JSON line instead of a table");
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& error) {
        return app.exit(error) == 0 ? 0 : 2;
    }
    options.timeout = std::chrono::seconds{timeout_seconds};
    try {
        const Result result = run_pair(options);
        json ? print_json(result) : print_table(result);
        return result.complete ? 0 : 1;
    } catch (const std::exception& error) {
        std::fprintf(stderr, "ERROR: %s\n", error.what());
        return 2;
    }
}
