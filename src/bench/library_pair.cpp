// pubsubx-library-pair: a publisher and a subscriber written with libpubsubx-client, as a
// program would write them, measured as pubsubx-bench measures its own 1->1 run: N messages of
// S bytes, at most W in flight, every delivery checked. Both clients share one io_context on
// one thread, the harness's one core, so bench/client-library sets the two side by side.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/use_future.hpp>
#include <cstdio>
#include <future>
#include <string>
#include <thread>

#include "bench_client.hpp"
#include "pubsubx/client.hpp"
#include "pubsubx/version.hpp"
#include "scenarios.hpp"

namespace {

using namespace pubsubx::bench;
using namespace std::chrono_literals;

struct PairOptions {
    std::string host = "127.0.0.1";
    std::uint16_t port = 12000;
    long messages = 1'000'000;
    std::size_t size = 16;
    long window = 10'000;
    std::chrono::seconds timeout{60};
};

pubsubx::ClientOptions client_options(const PairOptions& options, const std::string& name) {
    pubsubx::ClientOptions client;
    client.host = options.host;
    client.port = options.port;
    client.name = name;
    client.reconnect.enabled = false;  // a loss must show as one, not be repaired
    return client;
}

// Everything below runs on the io_context's one thread once the run has started.
class Pair {
  public:
    Pair(asio::io_context& io, const PairOptions& options)
        : options_(options),
          topic_("bench/library/" + std::to_string(getpid())),
          subscriber_(io.get_executor(), client_options(options, bench_name("libsub"))),
          publisher_(io.get_executor(), client_options(options, bench_name("libpub"))) {}

    // Connects both, subscribes, and waits for the subscriber's own probe: the broker has the
    // subscription once a message the subscriber published after it comes back.
    void prepare() {
        std::promise<void> subscribed;
        subscriber_.set_message_handler([&](std::string_view, std::string_view data) {
            if (probed_) {
                received(data);
            } else if (data == "~probe") {
                probed_ = true;
                subscribed.set_value();
            }
        });
        subscriber_.set_batch_handler([this] {
            if (probed_) {
                publish_window();
            }
        });
        subscriber_.async_connect(asio::use_future).get();
        publisher_.async_connect(asio::use_future).get();
        subscriber_.async_subscribe(topic_, asio::use_future).get();
        subscriber_.async_publish(topic_, "~probe", asio::use_future).get();
        if (subscribed.get_future().wait_for(10s) != std::future_status::ready) {
            throw std::runtime_error("the subscriber's probe did not come back");
        }
    }

    void start() {
        started_ = BenchClock::now();
        asio::post(subscriber_.get_executor(), [this] { publish_window(); });
    }

    long published() const { return published_; }
    const OrderCheck& check() const { return check_; }
    std::future<void> all_in() { return all_in_.get_future(); }
    BenchClock::time_point started() const { return started_; }
    BenchClock::time_point last() const { return last_; }
    std::string problem() const { return problem_; }
    pubsubx::ClientStats subscriber_stats() const { return subscriber_.stats(); }

    void disconnect() {
        publisher_.async_disconnect(asio::use_future).wait_for(5s);
        subscriber_.async_disconnect(asio::use_future).wait_for(5s);
    }

  private:
    // Paced as pubsubx-bench paces its publishers: once a sixteenth of the window is free,
    // the window is filled again, so that writes carry many frames.
    void publish_window() {
        const long credit =
            std::min(check_.delivered() + options_.window, options_.messages) - published_;
        const long chunk = std::max(1L, options_.window / 16);
        if (credit <= 0 || credit < std::min(chunk, options_.messages - published_)) {
            return;
        }
        while (published_ < options_.messages &&
               published_ - check_.delivered() < options_.window) {
            payload_.clear();
            append_payload(payload_, 0, published_, 0, options_.size);
            if (const std::error_code error = publisher_.publish(topic_, payload_)) {
                problem_ = "publish failed: " + error.message();
                return;
            }
            ++published_;
        }
    }

    void received(std::string_view data) {
        check_.accept(parse_payload(data));
        if (check_.delivered() == options_.messages) {
            last_ = BenchClock::now();
            all_in_.set_value();
        }
    }

    const PairOptions& options_;
    std::string topic_;
    pubsubx::Client subscriber_;
    pubsubx::Client publisher_;
    OrderCheck check_{1};
    bool probed_ = false;  // the subscription is in place: messages from now on are the run's
    long published_ = 0;
    std::string payload_;
    std::string problem_;
    BenchClock::time_point started_{};
    BenchClock::time_point last_{};
    std::promise<void> all_in_;
};

Result run_pair(const PairOptions& options) {
    Result result;
    result.scenario = "library pair 1->1, " + std::to_string(options.size) + " B";
    asio::io_context io{1};
    auto work = asio::make_work_guard(io);
    std::thread harness([&io] { io.run(); });
    double seconds = 0;
    long published = 0;
    {
        Pair pair{io, options};
        try {
            pair.prepare();
            auto all_in = pair.all_in();
            pair.start();
            if (all_in.wait_for(options.timeout) != std::future_status::ready) {
                fail(result, "timed out");
            }
        } catch (const std::exception& error) {
            fail(result, error.what());
        }
        // The harness thread stops before the figures are read: they are its data.
        pair.disconnect();
        work.reset();
        io.stop();
        harness.join();
        const auto end = result.complete ? pair.last() : BenchClock::now();
        seconds = std::chrono::duration<double>(end - pair.started()).count();
        published = pair.published();
        if (!pair.problem().empty()) {
            fail(result, pair.problem());
        }
        add_rates(result, published, seconds, pair.check().delivered(), seconds, options.size);
        add_checks(result, options.messages, {pair.check()});
    }
    return result;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{
        "pubsubx-library-pair: a publisher and a subscriber written with libpubsubx-client, "
        "measured as pubsubx-bench throughput measures 1->1. Start pubsubx-server first."};
    app.set_version_flag("--version", std::string{"pubsubx-library-pair "} + pubsubx::kVersion);
    PairOptions options;
    int timeout_seconds = 60;
    bool json = false;
    app.add_option("-H,--host", options.host, "Broker host")->capture_default_str();
    app.add_option("-p,--port", options.port, "Broker port")->capture_default_str();
    app.add_option("-n,--msgs", options.messages, "Messages")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    app.add_option("-s,--size", options.size, "Payload bytes")->capture_default_str();
    app.add_option("-w,--window", options.window, "Messages published but not yet received")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
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
