#include "lost_clients.hpp"

#include <algorithm>
#include <memory>
#include <thread>
#include <vector>

#include "bench_client.hpp"

namespace pubsubx::bench {

namespace {

using namespace std::chrono_literals;
using Clients = std::vector<std::unique_ptr<BenchClient>>;

constexpr auto kSetupTimeout = 30s;
// Time for the broker to see a reset connection end: on loopback it takes microseconds.
constexpr auto kLossNoticed = 200ms;
// Frames built per send; the next chunk is built while the kernel still holds this one.
constexpr long kChunk = 4096;

// Ends every connection with a reset (no DISCONNECT): the broker keeps them as lost clients.
void lose(Loop& loop, Clients& clients) {
    for (auto& client : clients) {
        client->link().reset();
    }
    clients.clear();
    loop.run_until([] { return false; }, kLossNoticed);
}

// Publishes messages first..first+count-1 to `topic`, `rate` a second (0: as fast as the broker
// reads them), then waits until it has handled them all. False if the connection ended or the
// barrier failed.
bool publish(Loop& loop, BenchClient& publisher, const std::string& topic, long first, long count,
             std::size_t size, long rate, Progress* progress) {
    const std::string prefix = "PUBLISH " + topic + " ";
    std::string frame;
    Link& link = publisher.link();
    // Paced: a millisecond's worth at a time.
    const long chunk = rate > 0 ? std::max(1L, rate / 1000) : kChunk;
    const auto started = BenchClock::now();
    for (long sent = first; sent < first + count;) {
        if (rate > 0) {
            std::this_thread::sleep_until(
                started +
                std::chrono::duration_cast<BenchClock::duration>(std::chrono::duration<double>(
                    static_cast<double>(sent - first) / static_cast<double>(rate))));
        }
        for (const long end = std::min(sent + chunk, first + count); sent < end; ++sent) {
            frame.assign(prefix);
            append_payload(frame, 0, sent, 0, size);
            link.queue_frame(frame);
        }
        link.flush();
        while (link.unsent() > 0 && !link.closed()) {
            loop.poll(1ms);
        }
        if (link.closed()) {
            return false;
        }
        if (progress != nullptr) {
            progress->update(sent - first, count);
        }
    }
    return barrier(loop, publisher);
}

}  // namespace

Result run_lost_flood(const Common& common, const LostFloodOptions& options) {
    Result result;
    result.scenario = with_thousands(options.messages) + " msgs of " +
                      std::to_string(options.size) + " B queued for " +
                      std::to_string(options.subscribers) + " lost client" +
                      (options.subscribers > 1 ? "s" : "") +
                      (options.rate > 0 ? ", " + with_thousands(options.rate) + " msgs/s" : "");
    Loop loop;
    const std::string topic = options.topic.empty() ? bench_name("flood-topic") : options.topic;
    Clients subscribers, publisher;
    for (int i = 0; i < options.subscribers; ++i) {
        subscribers.push_back(
            std::make_unique<BenchClient>(loop, common.endpoint, bench_name("lost", i)));
        subscribers.back()->link().queue_frame("SUBSCRIBE " + topic);
    }
    publisher.push_back(std::make_unique<BenchClient>(loop, common.endpoint, bench_name("flood")));
    if (!connect_all(loop, subscribers, kSetupTimeout) ||
        !connect_all(loop, publisher, kSetupTimeout)) {
        fail(result, "the clients were not accepted");
        return result;
    }
    // A subscriber's barrier comes back after its SUBSCRIBE was handled.
    for (auto& subscriber : subscribers) {
        if (!barrier(loop, *subscriber)) {
            fail(result, "a subscriber's barrier did not come back: " + subscriber->first_error());
            return result;
        }
    }
    lose(loop, subscribers);

    Progress progress{result.scenario};
    const auto started = BenchClock::now();
    const bool handled = publish(loop, *publisher[0], topic, 0, options.messages, options.size,
                                 options.rate, &progress);
    const double seconds = std::chrono::duration<double>(BenchClock::now() - started).count();
    if (!handled) {
        fail(result, "the broker did not handle every message: " + publisher[0]->first_error());
    }
    const long queued = options.messages * options.subscribers;
    add(result, "messages", static_cast<double>(options.messages),
        with_thousands(options.messages));
    add(result, "lost_clients", options.subscribers, std::to_string(options.subscribers));
    add(result, "queued", static_cast<double>(queued), with_thousands(queued));
    add(result, "published_per_s", options.messages / seconds,
        rate_text(options.messages / seconds));
    add(result, "queued_per_s", queued / seconds, rate_text(queued / seconds));
    add(result, "seconds", seconds, fixed(seconds, 3) + " s");
    return result;
}

Result run_churn(const Common& common, const ChurnOptions& options) {
    Result result;
    result.scenario = "churn: " + std::to_string(options.keepers) + " restored and " +
                      std::to_string(options.leavers) + " expiring clients a round, " +
                      with_thousands(options.messages) + " msgs of " +
                      std::to_string(options.size) + " B a round";
    Loop loop;
    const std::string topic = bench_name("churn-topic");
    Clients publisher;
    publisher.push_back(std::make_unique<BenchClient>(loop, common.endpoint, bench_name("churn")));
    if (!connect_all(loop, publisher, kSetupTimeout)) {
        fail(result, "the publisher was not accepted");
        return result;
    }
    long rounds = 0, restored = 0, not_restored = 0, received = 0, published = 0;
    Progress progress{"churn"};
    const auto started = BenchClock::now();
    const auto deadline = started + std::chrono::duration<double>(options.seconds);
    while (result.complete && BenchClock::now() < deadline) {
        Clients clients;
        auto last_message = BenchClock::now();
        for (int i = 0; i < options.keepers + options.leavers; ++i) {
            const std::string name = i < options.keepers
                                         ? bench_name("keep", i)
                                         : bench_name("leave" + std::to_string(rounds) + "-", i);
            clients.push_back(std::make_unique<BenchClient>(loop, common.endpoint, name));
            clients.back()->on_message([&](std::string_view, std::string_view data) {
                if (!parse_payload(data).probe) {
                    ++received;
                    last_message = BenchClock::now();
                }
            });
            clients.back()->link().queue_frame("SUBSCRIBE " + topic);
        }
        if (!connect_all(loop, clients, kSetupTimeout)) {
            fail(result, "round " + std::to_string(rounds) + ": a client was not accepted");
            break;
        }
        for (int i = 0; i < options.keepers; ++i) {
            const bool back = clients[static_cast<std::size_t>(i)]->restored();
            restored += back ? 1 : 0;
            not_restored += rounds > 0 && !back ? 1 : 0;
        }
        // A restored client's queue follows its RESTORED at once: it has come when nothing
        // more arrives for a while. The barriers then prove every SUBSCRIBE handled.
        loop.run_until([&] { return BenchClock::now() - last_message > 50ms; }, kSetupTimeout);
        for (auto& client : clients) {
            if (!barrier(loop, *client)) {
                fail(result, "round " + std::to_string(rounds) + ": a barrier did not come back");
                break;
            }
        }
        lose(loop, clients);
        if (result.complete && !publish(loop, *publisher[0], topic, published, options.messages,
                                        options.size, 0, nullptr)) {
            fail(result, "the broker did not handle every message: " + publisher[0]->first_error());
        }
        published += options.messages;
        ++rounds;
        progress.update(
            static_cast<long>(std::chrono::duration<double>(BenchClock::now() - started).count()),
            static_cast<long>(options.seconds));
    }
    const double seconds = std::chrono::duration<double>(BenchClock::now() - started).count();
    add(result, "rounds", static_cast<double>(rounds), with_thousands(rounds));
    add(result, "published", static_cast<double>(published), with_thousands(published));
    add(result, "restored", static_cast<double>(restored), with_thousands(restored));
    add(result, "received_on_restore", static_cast<double>(received), with_thousands(received));
    add(result, "not_restored", static_cast<double>(not_restored), with_thousands(not_restored));
    add(result, "seconds", seconds, fixed(seconds, 1) + " s");
    if (not_restored > 0) {
        fail(result, "a keeper was not RESTORED (is --lost-timeout longer than a round?)");
    }
    return result;
}

}  // namespace pubsubx::bench
