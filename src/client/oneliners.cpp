#include "oneliners.hpp"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <random>

#include "broker_session.hpp"
#include "pubsubx/protocol.hpp"

namespace pubsubx::client {

namespace {

// Shared by pub and sub: connects, reports failures as `ERROR:` lines on stderr and ends the
// runtime with exit code 1, or after an orderly DISCONNECT with 1 if the server sent an error
// frame (a refused PUBLISH or SUBSCRIBE), else 0.
class OneShotClient : public SessionListener {
  public:
    OneShotClient(Runtime& runtime, const Endpoint& endpoint, std::string_view name_prefix)
        : runtime_(runtime),
          console_(false, true),
          endpoint_(endpoint),
          name_(endpoint.name.empty() ? generate_client_name(name_prefix) : endpoint.name),
          session_(runtime.strand(), *this, endpoint.answer_timeout) {
        session_.use_tls(endpoint.tls);
    }

    void start() {
        runtime_.on_interrupt([this] { stop(); });
        session_.connect(endpoint_.host, endpoint_.port, name_, endpoint_.secret);
    }

    void on_refused(std::string_view error_frame) override { fail(error_frame); }
    void on_connect_failed(std::string_view reason) override {
        fail("ERROR: Cannot connect to " + endpoint_.host + ":" + std::to_string(endpoint_.port) +
             ": " + std::string{reason});
    }
    void on_closed(bool requested) override {
        if (requested) {
            runtime_.finish(exit_code());
        } else {
            fail("ERROR: Server shut the connection, all subscriptions are lost");
        }
    }

  protected:
    // Leaves cleanly when connected, reading on until the server closes: the protocol has no
    // acks, and the error frames for our last frames come before the close. Otherwise (still
    // connecting, or a second Ctrl-C while leaving) ends now.
    void stop() {
        if (session_.connected()) {
            session_.disconnect();
        } else if (!session_.idle()) {
            session_.abort();
            runtime_.finish(exit_code());
        }
    }
    int exit_code() const { return console_.printed_error() ? 1 : 0; }
    void fail(std::string_view error) {
        console_.error_line(error);
        session_.abort();
        runtime_.finish(1);
    }

    Runtime& runtime_;
    Console console_;
    Endpoint endpoint_;
    std::string name_;
    BrokerSession session_;
};

class Publisher final : public OneShotClient {
  public:
    Publisher(Runtime& runtime, const PublishOptions& options)
        : OneShotClient(runtime, options.endpoint, "pub"), options_(options) {}

    void on_accepted() override { publish(); }
    void on_restored(std::vector<std::string>) override { publish(); }
    void on_message(std::string_view, std::string_view) override {}
    // A refused PUBLISH: with -l the other lines still go out; the exit code will say 1.
    void on_error(std::string_view error_frame) override { console_.error_line(error_frame); }

  private:
    void publish() {
        if (options_.message) {
            session_.publish(options_.topic, *options_.message);
            stop();
            return;
        }
        runtime_.read_stdin(
            [this](std::string line) { session_.publish(options_.topic, std::move(line)); },
            [this] { stop(); });
    }

    const PublishOptions& options_;
};

class Subscriber final : public OneShotClient {
  public:
    Subscriber(Runtime& runtime, const SubscribeOptions& options)
        : OneShotClient(runtime, options.endpoint, "sub"), options_(options) {}

    void on_accepted() override { subscribe(); }
    // The broker kept our subscriptions; subscribing again is harmless and covers new topics.
    void on_restored(std::vector<std::string>) override { subscribe(); }

    void on_message(std::string_view topic, std::string_view data) override {
        if (done_) {
            return;
        }
        if (options_.with_topic) {
            std::fwrite(topic.data(), 1, topic.size(), stdout);
            std::fputc(' ', stdout);
        }
        std::fwrite(data.data(), 1, data.size(), stdout);
        std::fputc('\n', stdout);
        if (options_.count && ++received_ >= *options_.count) {
            done_ = true;
            std::fflush(stdout);
            stop();
        }
    }
    void on_read_done() override { std::fflush(stdout); }
    // A refused SUBSCRIBE: waiting for messages that cannot come would be waiting forever.
    // Leaving reads on until the server's close, so every refused topic is named.
    void on_error(std::string_view error_frame) override {
        console_.error_line(error_frame);
        done_ = true;
        if (session_.connected()) {
            stop();
        }
    }

  private:
    void subscribe() {
        for (const std::string& topic : options_.topics) {
            session_.subscribe(topic);
        }
    }

    const SubscribeOptions& options_;
    std::uint64_t received_ = 0;
    bool done_ = false;
};

}  // namespace

std::string generate_client_name(std::string_view prefix) {
    char host[65] = {};
    gethostname(host, sizeof host - 1);
    std::random_device random;
    char suffix[24];
    std::snprintf(suffix, sizeof suffix, "-%d-%08x", static_cast<int>(getpid()), random());
    std::string name{prefix};
    name.append("-").append(host);
    name.resize(
        std::min<std::size_t>(name.size(), kMaxNameLength - std::string_view{suffix}.size()));
    name.append(suffix);
    for (char& c : name) {
        if (c == ' ' || static_cast<unsigned char>(c) < 0x21) {
            c = '_';
        }
    }
    return name;
}

int run_publish(const PublishOptions& options) {
    auto runtime = std::make_shared<Runtime>();
    Publisher publisher{*runtime, options};
    publisher.start();
    return runtime->run();
}

int run_subscribe(const SubscribeOptions& options) {
    auto runtime = std::make_shared<Runtime>();
    Subscriber subscriber{*runtime, options};
    subscriber.start();
    return runtime->run();
}

}  // namespace pubsubx::client
