// libFuzzer target: the frame splitter, the command parser and the broker core driven by an
// arbitrary byte stream read as a little program for four simulated connections (feed bytes,
// drop the connection, drain its queue, let time pass). Small limits make every limit path
// reachable. After every step the core's invariants are checked; a broken one aborts.
//
// Built with clang: meson setup build-fuzz -Dfuzz=true (see README). The same file is linked
// into fuzz-replay, which runs the seed corpus as an ordinary test in every build.
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "pubsubx/broker.hpp"
#include "pubsubx/protocol.hpp"

namespace {

using namespace pubsubx;
using namespace std::chrono_literals;

constexpr std::size_t kConnections = 4;
constexpr std::size_t kMaxFrame = 512;

// Frames that a random byte stream would rarely spell, so the fuzzer reaches deep states fast.
constexpr std::array<std::string_view, 16> kCannedFrames{
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
    "SUBSCRIBE v"};

class FuzzConnection final : public Connection {
  public:
    void outbound_ready() override {}
    void close_requested(std::string_view) override { closed = true; }

    FrameSplitter splitter{kMaxFrame};
    bool closed = false;
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
    config.max_lost_clients = 2;
    config.slow_consumer_grace = 1s;
    return config;
}

class Simulation {
  public:
    Simulation() : logger_(LogLevel::quiet, null_file()), broker_(small_limits(), logger_) {
        for (auto& connection : connections_) {
            connection = std::make_unique<FuzzConnection>();
        }
    }

    void step(Program& program) {
        const std::uint8_t op = program.byte();
        FuzzConnection& connection = fresh_if_closed(*connections_[op % kConnections]);
        switch ((op / kConnections) % 5) {
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
            case 3: {
                std::string written;
                broker_.take_outbound(connection, written);
                break;
            }
            case 4:
                now_ += std::chrono::milliseconds{100} * program.byte();
                broker_.expire_lost_clients(now_);
                break;
        }
        check();
    }

  private:
    static std::FILE* null_file() {
        static std::FILE* const file = std::fopen("/dev/null", "w");
        return file;
    }

    // A closed connection is replaced by a new one, as a client would reconnect.
    FuzzConnection& fresh_if_closed(FuzzConnection& connection) {
        if (!connection.closed) {
            return connection;
        }
        for (auto& slot : connections_) {
            if (slot.get() == &connection) {
                slot = std::make_unique<FuzzConnection>();
                return *slot;
            }
        }
        std::abort();
    }

    // What a session does with received bytes.
    void feed(FuzzConnection& connection, std::string_view bytes) {
        const auto status = connection.splitter.feed(bytes, [&](std::string_view frame) {
            const FrameResult result = broker_.handle_frame(connection, frame, now_);
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
        if (broker_.lost_client_count() > small_limits().max_lost_clients) {
            std::fprintf(stderr, "more lost clients than the limit\n");
            std::abort();
        }
    }

    Logger logger_;
    Broker broker_;
    std::array<std::unique_ptr<FuzzConnection>, kConnections> connections_;
    TimePoint now_{};
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
