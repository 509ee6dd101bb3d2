// The broker core's unit tests stand in for the server: fake connections that apply the
// core's effects, and the settings most tests use.
#pragma once

#include <doctest/doctest.h>

#include <cstdio>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "pubsubx/broker.hpp"
#include "pubsubx/protocol.hpp"

namespace pubsubx::test_support {

using namespace std::chrono_literals;
// Stands in for the server: a connection that records what the core's effects ask of it.
class FakeConnection final : public Connection {
  public:
    explicit FakeConnection(Broker& broker, SourceAddress source = {})
        : broker_(broker), source_(source) {}

    // As the server hands frames over: its delimiter follows the frame in memory.
    FrameResult send(std::string_view frame, TimePoint now = TimePoint{}) {
        last_sent_.assign(frame).append(kDelimiter);
        FrameResult result =
            broker_.handle_frame(*this, std::string_view{last_sent_}.substr(0, frame.size()), now,
                                 source_, FrameEnd::delimiter_follows);
        apply_effects(broker_);
        return result;
    }
    // A frame with nothing known after it (the broker encodes a PUBLISH's delivery frame).
    FrameResult send_undelimited(std::string_view frame, TimePoint now = TimePoint{}) {
        FrameResult result = broker_.handle_frame(*this, frame, now, source_);
        apply_effects(broker_);
        return result;
    }
    // Everything the broker queued for this connection since the last call, as frames; the
    // write completes at once (a reader that keeps up).
    std::vector<std::string> received(TimePoint now = TimePoint{}) {
        std::vector<std::string> frames;
        for (;;) {
            std::vector<std::string> written = start_write();
            broker_.write_completed(*this, now);
            if (written.empty()) {
                return frames;
            }
            frames.insert(frames.end(), written.begin(), written.end());
        }
    }
    // Takes the queue for a write that stays in flight until complete_write().
    std::vector<std::string> start_write() {
        std::string bytes;
        broker_.take_outbound(*this, bytes);
        std::vector<std::string> frames;
        FrameSplitter splitter{1 << 20};
        splitter.feed(bytes, [&](std::string_view frame) {
            frames.emplace_back(frame);
            return true;
        });
        return frames;
    }
    void complete_write(TimePoint now) { broker_.write_completed(*this, now); }
    void lose(TimePoint now) {
        broker_.connection_closed(*this, now);
        apply_effects(broker_);
    }

    // What the server would do with the effects: these fakes record them.
    static void apply_effects(Broker& broker) {
        Effects effects;
        broker.take_effects(effects);
        for (const CloseRequest& request : effects.close) {
            static_cast<FakeConnection*>(request.connection)->close_reason = request.reason;
            static_cast<FakeConnection*>(request.connection)->close_error = request.error_frame;
        }
        for (Connection* connection : effects.flush) {
            ++static_cast<FakeConnection*>(connection)->ready_calls;
        }
        if (effects.arm_expiry) {
            armed_expiry[&broker] =
                std::min(armed_expiry[&broker].value_or(TimePoint::max()), *effects.arm_expiry);
        }
    }
    // The expiry timer each broker asked for, as the server would have armed it.
    static inline std::map<const Broker*, std::optional<TimePoint>> armed_expiry;

    int ready_calls = 0;
    std::string close_reason;  // set when the core asked to close this connection
    std::string close_error;   // the error frame it asked to write first, if any

  private:
    Broker& broker_;
    SourceAddress source_;
    std::string last_sent_;  // what send() handed over: results may view it until the next
};

// The server's expiry timer firing: expires, then takes the effects (the next arming).
inline void fire_expiry(Broker& broker, TimePoint now) {
    FakeConnection::armed_expiry[&broker].reset();
    broker.expire_lost_clients(now);
    FakeConnection::apply_effects(broker);
}

inline SourceAddress address(std::uint32_t last_byte) {
    return SourceAddress::ipv4(0x7f000000U | last_byte);
}

using Frames = std::vector<std::string>;

// The settings most tests use: 10 s retention, 1 KiB queues.
inline BrokerConfig test_config() {
    BrokerConfig config;
    config.lost_timeout = 10s;
    config.max_queue_bytes = 1024;
    return config;
}

struct Fixture {
    Logger logger{LogLevel::quiet, std::tmpfile()};
    BrokerConfig config = test_config();
    Broker broker{config, logger};
    TimePoint t0{};
};

}  // namespace pubsubx::test_support
