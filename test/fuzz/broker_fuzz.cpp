// libFuzzer target: the frame splitter, the command parser and the broker core driven by an
// arbitrary byte stream read as a little program for four simulated connections from two
// sources (feed bytes, drop the connection, start a write, complete it, let time pass). The
// simulation plays the server: it carries out the core's effects, arms the one expiry timer
// and fires it when time passes it. Small limits make every limit path reachable. After every
// step the core's invariants are checked, and so are the server's: a lost client always has
// an expiry armed at or before its deadline; a connection the core closed has no client.
//
// A model store hears the core's persistence calls (core/persistence.hpp) and must hold, for
// every lost client, exactly its queue and subscriptions, and nothing for a connected one.
//
// Built with clang: meson setup build-fuzz -Dfuzz=true (see README). The same file is linked
// into fuzz-replay, which runs the seed corpus as an ordinary test in every build.
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pubsubx/broker.hpp"
#include "pubsubx/protocol.hpp"

namespace {

using namespace pubsubx;
using namespace std::chrono_literals;

constexpr std::size_t kConnections = 4;
constexpr std::size_t kMaxFrame = 512;  // beyond kMaxFrameBeforeConnect, so both apply

// Frames that a random byte stream would rarely spell, so the fuzzer reaches deep states fast.
constexpr std::array<std::string_view, 24> kCannedFrames{
    "CONNECT a",
    "CONNECT b",
    "CONNECT a s3cret",
    "CONNECT a wrong",
    "CONNECT b s3cret",
    "SUBSCRIBE t",
    "SUBSCRIBE u",
    "UNSUBSCRIBE t",
    "PUBLISH t hello",
    "PUBLISH u 0123456789012345678901234567890123456789",
    "PUBLISH t",
    "DISCONNECT",
    "SUBSCRIBE topic-that-is-too-long",
    "CONNECT",
    "",
    "SUBSCRIBE v",
    "SUBSCRIBE t/+",
    "SUBSCRIBE #",
    "SUBSCRIBE t/#",
    "UNSUBSCRIBE t/#",
    "PUBLISH t/x hi",
    "PUBLISH t/+ no",
    "SUBSCRIBE +/x/#",
    "SUBSCRIBE a/#/b"};

[[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "%s\n", what);
    std::abort();
}

// What a durable store would hold, by client id, as plain containers.
class ModelStore final : public Persistence {
  public:
    void client_saved(const Client& client) override {
        Record& record = records_[client.id()];
        record.name = client.name();
        record.has_secret = client.credentials() != nullptr;
    }
    void client_removed(const Client& client) override { records_.erase(client.id()); }
    void subscribed(const Client& client, std::string_view topic) override {
        known(client).topics.emplace_back(topic);
    }
    void unsubscribed(const Client& client, std::string_view topic) override {
        auto& topics = known(client).topics;
        std::erase(topics, std::string{topic});
    }
    void messages_kept(const Client& client, std::string_view frames) override {
        for_each_encoded_frame(
            frames, [&](std::string_view frame) { known(client).frames.emplace_back(frame); });
    }
    void oldest_dropped(const Client& client, std::size_t count) override {
        auto& frames = known(client).frames;
        if (count > frames.size()) {
            fail("the store was told to drop more messages than it holds");
        }
        frames.erase(frames.begin(), frames.begin() + static_cast<std::ptrdiff_t>(count));
    }
    void queue_handed_over(const Client& client) override { known(client).frames.clear(); }

    void check(const Broker& broker) const {
        if (records_.size() != broker.client_count()) {
            fail("the store and the broker have different clients");
        }
        broker.for_each_client([&](const Client& client) {
            const auto found = records_.find(client.id());
            if (found == records_.end() || found->second.name != client.name() ||
                found->second.has_secret != (client.credentials() != nullptr)) {
                fail("a client's record in the store differs");
            }
            std::vector<std::string> topics;
            for (const Subscription& subscription : client.subscriptions()) {
                topics.emplace_back(subscription.topic->name());
            }
            if (topics != found->second.topics) {
                fail("a client's subscriptions in the store differ");
            }
            std::string frames;
            for (const std::string& frame : found->second.frames) {
                frames += frame;
            }
            const std::string_view expected =
                client.connected() ? std::string_view{} : client.outbound().messages();
            if (frames != expected) {
                fail("the store's queue of a client differs from the broker's");
            }
        });
    }

  private:
    struct Record {
        std::string name;
        bool has_secret = false;
        std::vector<std::string> topics;
        std::deque<std::string> frames;
    };
    Record& known(const Client& client) {
        const auto found = records_.find(client.id());
        if (found == records_.end()) {
            fail("the store heard of a client it never saved");
        }
        return found->second;
    }

    std::map<std::uint64_t, Record> records_;
};

class FuzzConnection final : public Connection {
  public:
    explicit FuzzConnection(SourceAddress from) : source(from) {}

    SourceAddress source;
    FrameSplitter splitter{kMaxFrame};
    bool closed = false;
    bool write_in_flight = false;
};

// Reads the program; past the end every read returns zeros and `done` turns true.
class Program {
  public:
    Program(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}
    bool done() const { return at_ >= size_; }
    std::uint8_t byte() { return done() ? 0 : data_[at_++]; }
    std::string_view bytes(std::size_t count) {
        count = std::min(count, size_ - std::min(at_, size_));
        const std::string_view taken{reinterpret_cast<const char*>(data_) + at_, count};
        at_ += count;
        return taken;
    }

  private:
    const std::uint8_t* data_;
    std::size_t size_;
    std::size_t at_ = 0;
};

BrokerConfig small_limits() {
    BrokerConfig config;
    config.lost_timeout = 5s;
    config.max_queue_bytes = 256;
    config.max_total_queue_bytes = 1024;
    config.max_topics_per_client = 4;
    config.max_topic_length = 16;
    config.max_topic_levels = 3;
    config.max_lost_clients = 2;
    config.slow_consumer_grace = 1s;
    return config;
}

class Simulation {
  public:
    Simulation() : logger_(LogLevel::quiet, null_file()), broker_(small_limits(), logger_) {
        for (std::size_t i = 0; i < kConnections; ++i) {
            connections_[i] = std::make_unique<FuzzConnection>(source_of(i));
        }
        broker_.attach_persistence(&store_);
    }

    void step(Program& program) {
        const std::uint8_t op = program.byte();
        FuzzConnection& connection = fresh_if_closed(*connections_[op % kConnections]);
        switch ((op / kConnections) % 6) {
            case 0:
                feed(connection, program.bytes(program.byte()));
                break;
            case 1: {
                std::string frame{kCannedFrames[program.byte() % kCannedFrames.size()]};
                frame.append(kDelimiter);
                feed(connection, frame);
                break;
            }
            case 2:
                broker_.connection_closed(connection, now_);
                connection.closed = true;
                break;
            case 3:
                if (!connection.write_in_flight) {
                    std::string written;
                    broker_.take_outbound(connection, written);
                    connection.write_in_flight = !written.empty();
                }
                break;
            case 4:
                if (connection.write_in_flight) {
                    connection.write_in_flight = false;
                    broker_.write_completed(connection, now_);
                }
                break;
            case 5:
                pass_time(std::chrono::milliseconds{100} * program.byte());
                break;
        }
        apply_effects();
        check();
    }

  private:
    static std::FILE* null_file() {
        static std::FILE* const file = std::fopen("/dev/null", "w");
        return file;
    }

    static SourceAddress source_of(std::size_t slot) {
        return SourceAddress::ipv4(0x7f000001U + static_cast<std::uint32_t>(slot % 2));
    }

    // A closed connection is replaced by a new one, as a client would reconnect.
    FuzzConnection& fresh_if_closed(FuzzConnection& connection) {
        if (!connection.closed) {
            return connection;
        }
        for (std::size_t i = 0; i < kConnections; ++i) {
            if (connections_[i].get() == &connection) {
                connections_[i] = std::make_unique<FuzzConnection>(source_of(i));
                return *connections_[i];
            }
        }
        std::abort();
    }

    // What the server does with the core's effects.
    void apply_effects() {
        broker_.take_effects(effects_);
        for (const CloseRequest& request : effects_.close) {
            auto& connection = static_cast<FuzzConnection&>(*request.connection);
            if (connection.client() != nullptr) {
                fail("the core closed a connection that still has a client");
            }
            connection.closed = true;
        }
        if (effects_.arm_expiry && (!armed_ || *effects_.arm_expiry < *armed_)) {
            armed_ = effects_.arm_expiry;
        }
    }

    // Time passes; the expiry timer fires when its time has come.
    void pass_time(Clock::duration duration) {
        now_ += duration;
        if (armed_ && *armed_ <= now_) {
            armed_.reset();
            broker_.expire_lost_clients(now_);
        }
    }

    // What a session does with received bytes.
    void feed(FuzzConnection& connection, std::string_view bytes) {
        if (connection.client() == nullptr) {
            connection.splitter.set_max_frame(std::min(kMaxFrame, kMaxFrameBeforeConnect));
        }
        const auto status = connection.splitter.feed(bytes, [&](std::string_view frame) {
            const FrameResult result = broker_.handle_frame(
                connection, frame, now_, connection.source, FrameEnd::delimiter_follows);
            if (connection.client() != nullptr) {
                connection.splitter.set_max_frame(kMaxFrame);
            }
            if (result.next == FrameResult::Next::close) {
                broker_.connection_closed(connection, now_);
                connection.closed = true;
                return false;
            }
            return !connection.closed;
        });
        if (status == FrameSplitter::Status::frame_too_long) {
            broker_.connection_closed(connection, now_);
            connection.closed = true;
        }
    }

    void check() const {
        const std::string broken = broker_.check_consistency();
        if (!broken.empty()) {
            std::fprintf(stderr, "broker invariant broken: %s\n", broken.c_str());
            std::abort();
        }
        store_.check(broker_);
        if (broker_.lost_client_count() > small_limits().max_lost_clients) {
            fail("more lost clients than the limit");
        }
        // Every lost client has an expiry armed at or before its deadline, and none is kept
        // past it.
        if (const auto next = broker_.next_expiry()) {
            if (!armed_ || *armed_ > *next) {
                fail("a lost client has no expiry armed at or before its deadline");
            }
            if (*next < now_ - small_limits().lost_timeout && !armed_) {
                fail("a lost client outlived its deadline");
            }
        }
    }

    Logger logger_;
    ModelStore store_;
    Broker broker_;
    std::array<std::unique_ptr<FuzzConnection>, kConnections> connections_;
    TimePoint now_{};
    Effects effects_;
    std::optional<TimePoint> armed_;  // the server's expiry timer
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    Program program{data, size};
    Simulation simulation;
    while (!program.done()) {
        simulation.step(program);
    }
    return 0;
}
