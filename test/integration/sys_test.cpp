// The $SYS statistics over real loopback TCP: a server with a short --sys-interval publishes
// them, a client subscribes to exact $SYS topics and watches the values follow what happens.
#include <doctest/doctest.h>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "support.hpp"

using namespace pubsubx::testing;

namespace {

// The value of the next message on `topic` (messages on other topics are skipped), or
// nullopt if none comes within `timeout`.
std::optional<std::string> next_value(TestClient& client, std::string_view topic,
                                      Millis timeout = 3000ms) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    const std::string prefix = std::string{topic} + " ";
    for (;;) {
        const auto left =
            std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now());
        if (left <= Millis::zero()) {
            return std::nullopt;
        }
        const std::optional<std::string> frame = client.read_frame(left);
        if (!frame) {
            return std::nullopt;
        }
        if (frame->starts_with(prefix)) {
            return frame->substr(prefix.size());
        }
    }
}

// Waits until a message on `topic` carries `value`; the last value seen otherwise.
std::string wait_value(TestClient& client, std::string_view topic, std::string_view value,
                       Millis timeout = 3000ms) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::string seen = "(none)";
    while (std::chrono::steady_clock::now() < deadline) {
        const auto left =
            std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now());
        const std::optional<std::string> next = next_value(client, topic, left);
        if (!next) {
            break;
        }
        seen = *next;
        if (seen == value) {
            break;
        }
    }
    return seen;
}

void subscribe_all(TestClient& client, std::initializer_list<std::string_view> topics) {
    for (const std::string_view topic : topics) {
        client.send_frame("SUBSCRIBE " + std::string{topic});
    }
}

}  // namespace

TEST_CASE("$SYS topics are published every --sys-interval and follow the counters") {
    ServerProcess server{{"--sys-interval", "0.05"}};
    TestClient watcher{server.port()};
    watcher.connect_as("watcher");
    subscribe_all(watcher, {"$SYS/broker/messages/received", "$SYS/broker/messages/sent",
                            "$SYS/broker/clients/connected", "$SYS/broker/uptime"});
    // Before anyone publishes: no message received, one client.
    CHECK(wait_value(watcher, "$SYS/broker/messages/received", "0") == "0");
    CHECK(wait_value(watcher, "$SYS/broker/clients/connected", "1") == "1");
    const std::optional<std::string> uptime = next_value(watcher, "$SYS/broker/uptime");
    REQUIRE(uptime.has_value());
    CHECK(uptime->ends_with(" seconds"));

    TestClient publisher{server.port()};
    publisher.connect_as("publisher");
    publisher.send_frame("SUBSCRIBE t");
    for (int i = 0; i < 3; ++i) {
        publisher.send_frame("PUBLISH t m" + std::to_string(i));
    }
    CHECK(wait_value(watcher, "$SYS/broker/clients/connected", "2") == "2");
    CHECK(wait_value(watcher, "$SYS/broker/messages/received", "3") == "3");
    // Three deliveries to the publisher, and at least those of the statistics themselves.
    const std::optional<std::string> sent = next_value(watcher, "$SYS/broker/messages/sent");
    REQUIRE(sent.has_value());
    CHECK(std::stoul(*sent) > 3);
}

TEST_CASE("$SYS byte counters count every byte read from the clients' sockets") {
    ServerProcess server{{"--sys-interval", "0.05"}};
    TestClient watcher{server.port()};
    const std::string frames =
        "CONNECT watcher\n\nxSUBSCRIBE $SYS/broker/bytes/received\n\nx"
        "SUBSCRIBE $SYS/broker/bytes/sent\n\nxSUBSCRIBE $SYS/broker/load/bytes/received/"
        "per_second\n\nxPUBLISH elsewhere data\n\nx";
    watcher.send_raw(frames);
    REQUIRE(watcher.read_frame() == "OK: Conn accepted");
    // Everything the server read is exactly what this client wrote.
    CHECK(wait_value(watcher, "$SYS/broker/bytes/received", std::to_string(frames.size())) ==
          std::to_string(frames.size()));
    // Nothing more is read, so the rate over the next interval falls to zero.
    CHECK(wait_value(watcher, "$SYS/broker/load/bytes/received/per_second", "0.00") == "0.00");
    // The server has written at least its accept reply and some statistics by now, and keeps
    // writing them.
    const std::optional<std::string> sent = next_value(watcher, "$SYS/broker/bytes/sent");
    REQUIRE(sent.has_value());
    CHECK(std::stoul(*sent) > std::string_view{"OK: Conn accepted\n\nx"}.size());
    const std::optional<std::string> later = next_value(watcher, "$SYS/broker/bytes/sent");
    REQUIRE(later.has_value());
    CHECK(std::stoul(*later) > std::stoul(*sent));
}

TEST_CASE("$SYS per-second rates show traffic in the interval it happened") {
    ServerProcess server{{"--sys-interval", "0.05"}};
    TestClient watcher{server.port()};
    watcher.connect_as("watcher");
    watcher.send_frame("SUBSCRIBE $SYS/broker/load/messages/received/per_second");
    REQUIRE(next_value(watcher, "$SYS/broker/load/messages/received/per_second").has_value());
    TestClient publisher{server.port()};
    publisher.connect_as("publisher");
    for (int i = 0; i < 100; ++i) {
        publisher.send_frame("PUBLISH t m");
    }
    std::string rate = "0.00";
    for (int update = 0; update < 20 && rate == "0.00"; ++update) {
        rate = next_value(watcher, "$SYS/broker/load/messages/received/per_second").value_or("");
    }
    CHECK(std::stod(rate) > 0);
    CHECK(wait_value(watcher, "$SYS/broker/load/messages/received/per_second", "0.00") == "0.00");
}

TEST_CASE("with --sys-interval 0 no $SYS topic is published") {
    ServerProcess server{{"--sys-interval", "0"}};
    // No timer at all, not one with a long period that the wait below would miss.
    CHECK(server.wait_for_output("No statistics on $SYS/broker/... (--sys-interval 0)"));
    CHECK_FALSE(server.wait_for_output("every", 100ms));
    TestClient watcher{server.port()};
    watcher.connect_as("watcher");
    subscribe_all(watcher, {"$SYS/broker/uptime", "$SYS/broker/messages/received",
                            "$SYS/broker/clients/connected"});
    watcher.barrier();
    CHECK_FALSE(watcher.read_frame(500ms).has_value());
}

TEST_CASE("--sys-interval refuses an interval too short to be anything but a busy loop") {
    ChildProcess server{binary_path("PUBSUBX_SERVER"), {"0", "--sys-interval", "0.001"}};
    CHECK(server.wait_exit() == 2);
    CHECK(server.wait_for_output("0 (off) or at least 0.01 seconds"));
}
