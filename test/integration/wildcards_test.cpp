// Wildcard subscriptions (MQTT's `+` and `#`) and the `$SYS` namespace over real loopback TCP:
// each test starts its own server on an ephemeral port and speaks the wire protocol.
#include <doctest/doctest.h>

#include <chrono>
#include <optional>
#include <set>
#include <string>

#include "support.hpp"

using namespace pubsubx::testing;
using namespace std::chrono_literals;

namespace {

// A server with a subscriber `sub` and a publisher `pub`, both connected.
struct SubAndPub {
    explicit SubAndPub(std::vector<std::string> server_args = {}) : server(std::move(server_args)) {
        sub.connect_as("sub");
        pub.connect_as("pub");
    }

    ServerProcess server;
    TestClient sub{server.port()}, pub{server.port()};
};

}  // namespace

TEST_CASE("`+` matches one level and a last `#` its parent and every level below") {
    SubAndPub clients;
    auto& [server, sub, pub] = clients;
    sub.send_frame("SUBSCRIBE s/+/temp");
    sub.send_frame("SUBSCRIBE plant/#");
    sub.barrier();
    pub.send_frame("PUBLISH s/1/temp 21.5");
    pub.send_frame("PUBLISH s/2/humidity 40");
    pub.send_frame("PUBLISH s/3/temp 19");
    pub.send_frame("PUBLISH plant level 0");
    pub.send_frame("PUBLISH plant/a/b/c deep");
    pub.send_frame("PUBLISH plants no");
    CHECK(sub.read_frame() == "s/1/temp 21.5");
    CHECK(sub.read_frame() == "s/3/temp 19");
    CHECK(sub.read_frame() == "plant level 0");
    CHECK(sub.read_frame() == "plant/a/b/c deep");
    CHECK_FALSE(sub.read_frame(200ms).has_value());
    CHECK(server.wait_for_output("Client 'sub' subscribed to 's/+/temp'"));
}

TEST_CASE("a client whose filters overlap receives each message once") {
    SubAndPub clients;
    auto& [server, sub, pub] = clients;
    sub.send_frame("SUBSCRIBE a/#");
    sub.send_frame("SUBSCRIBE a/+");
    sub.send_frame("SUBSCRIBE a/b");
    sub.barrier();
    pub.send_frame("PUBLISH a/b once");
    pub.send_frame("PUBLISH a/c once too");
    CHECK(sub.read_frame() == "a/b once");
    CHECK(sub.read_frame() == "a/c once too");
    CHECK_FALSE(sub.read_frame(200ms).has_value());
}

TEST_CASE("a wildcard PUBLISH gets an error frame and the connection stays open") {
    SubAndPub clients;
    auto& [server, sub, pub] = clients;
    sub.send_frame("SUBSCRIBE a/+");
    sub.barrier();
    pub.send_frame("PUBLISH a/+ sneaky");
    CHECK(pub.read_frame() == "ERROR: Wildcards are not allowed in a PUBLISH topic");
    pub.send_frame("PUBLISH # sneaky");
    CHECK(pub.read_frame() == "ERROR: Wildcards are not allowed in a PUBLISH topic");
    pub.send_frame("PUBLISH a/b fine");
    CHECK(sub.read_frame() == "a/b fine");
    CHECK_FALSE(sub.read_frame(200ms).has_value());
}

TEST_CASE("`#` before the last level gets an error frame on SUBSCRIBE") {
    ServerProcess server;
    TestClient c{server.port()};
    c.connect_as("c");
    c.send_frame("SUBSCRIBE a/#/b");
    CHECK(c.read_frame() ==
          "ERROR: Wildcard '#' is allowed only as the last level of a SUBSCRIBE topic");
    c.send_frame("SUBSCRIBE a/b");
    c.send_frame("PUBLISH a/b still open");
    CHECK(c.read_frame() == "a/b still open");
}

TEST_CASE("--max-topic-levels bounds wildcard filters, not exact topics") {
    ServerProcess server{{"--max-topic-levels", "2"}};
    TestClient c{server.port()};
    c.connect_as("c");
    c.send_frame("SUBSCRIBE a/b/+");
    CHECK(c.read_frame() == "ERROR: Too many levels in a wildcard filter (the limit is 2)");
    c.send_frame("SUBSCRIBE a/+");
    c.send_frame("SUBSCRIBE a/b/c/d");
    c.send_frame("PUBLISH a/x one");
    c.send_frame("PUBLISH a/b/c/d two");
    CHECK(c.read_frame() == "a/x one");
    CHECK(c.read_frame() == "a/b/c/d two");
}

TEST_CASE("clients cannot PUBLISH under $SYS, and `#` does not match $ topics") {
    SubAndPub clients;
    auto& [server, sub, pub] = clients;
    sub.send_frame("SUBSCRIBE #");
    sub.send_frame("SUBSCRIBE $SYS/broker/uptime");
    sub.barrier();
    pub.send_frame("PUBLISH $SYS/broker/uptime 999 seconds");
    CHECK(pub.read_frame() ==
          "ERROR: Topics under $SYS/ are the broker's own; clients cannot PUBLISH to them");
    pub.send_frame("PUBLISH $other/x not for #");
    pub.send_frame("PUBLISH visible yes");
    CHECK(sub.read_frame() == "visible yes");
    CHECK_FALSE(sub.read_frame(200ms).has_value());
}

TEST_CASE("a lost client's filters keep queueing; RESTORED lists them as given") {
    ServerProcess server;
    {
        TestClient sub{server.port()};
        sub.connect_as("sub");
        sub.send_frame("SUBSCRIBE s/+/temp");
        sub.send_frame("SUBSCRIBE news");
        sub.send_frame("SUBSCRIBE log/#");
        sub.barrier();
        sub.drop();
    }
    REQUIRE(server.wait_for_output("Client 'sub' lost"));
    TestClient pub{server.port()};
    pub.connect_as("pub");
    pub.send_frame("PUBLISH s/7/temp 20");
    pub.send_frame("PUBLISH log/a/b line");
    pub.send_frame("PUBLISH other no");
    pub.barrier();
    TestClient back{server.port()};
    back.send_frame("CONNECT sub");
    CHECK(back.read_frame() == "RESTORED sub");
    CHECK(back.read_frame() == "s/+/temp news log/#");
    CHECK(back.read_frame() == "s/7/temp 20");
    CHECK(back.read_frame() == "log/a/b line");
    CHECK_FALSE(back.read_frame(200ms).has_value());
}

TEST_CASE("UNSUBSCRIBE removes the filter exactly as written") {
    SubAndPub clients;
    auto& [server, sub, pub] = clients;
    sub.send_frame("SUBSCRIBE a/+");
    sub.send_frame("UNSUBSCRIBE a/b");  // not a subscription of sub: nothing changes
    sub.barrier();
    pub.send_frame("PUBLISH a/b kept");
    CHECK(sub.read_frame() == "a/b kept");
    sub.send_frame("UNSUBSCRIBE a/+");
    sub.barrier();
    pub.send_frame("PUBLISH a/b gone");
    CHECK_FALSE(sub.read_frame(200ms).has_value());
}

TEST_CASE("an original client's topics with `+` or `#` inside a level keep their meaning") {
    SubAndPub clients;
    auto& [server, sub, pub] = clients;
    sub.send_frame("SUBSCRIBE c++");
    sub.send_frame("SUBSCRIBE issue#42");
    sub.barrier();
    pub.send_frame("PUBLISH c++ templates");
    pub.send_frame("PUBLISH issue#42 fixed");
    pub.send_frame("PUBLISH c+ no");
    CHECK(pub.read_frame(200ms) == std::nullopt);  // no error: these are ordinary topics
    CHECK(sub.read_frame() == "c++ templates");
    CHECK(sub.read_frame() == "issue#42 fixed");
    CHECK_FALSE(sub.read_frame(200ms).has_value());
}

TEST_CASE("`$SYS/#` receives the broker's statistics; `#` does not") {
    ServerProcess server{{"--sys-interval", "0.05"}};
    TestClient everything{server.port()}, watcher{server.port()};
    everything.connect_as("everything");
    watcher.connect_as("watcher");
    everything.send_frame("SUBSCRIBE #");
    watcher.send_frame("SUBSCRIBE $SYS/broker/+");
    watcher.send_frame("SUBSCRIBE $SYS/#");
    const auto first = watcher.read_frame();
    REQUIRE(first.has_value());
    CHECK(first->starts_with("$SYS/broker/"));
    // A publication lists every topic once, though both filters match most of them.
    std::set<std::string> seen;
    for (std::optional<std::string> frame = first; frame && !frame->starts_with("$SYS/broker/log");
         frame = watcher.read_frame()) {
        CHECK(seen.insert(frame->substr(0, frame->find(' '))).second);
    }
    CHECK(seen.count("$SYS/broker/subscriptions/filters") == 1);
    CHECK_FALSE(everything.read_frame(300ms).has_value());
}

TEST_CASE("a PUBLISH to a topic that reads as a reply is refused, so `#` is not fooled") {
    SubAndPub clients;
    auto& [server, sub, pub] = clients;
    sub.send_frame("SUBSCRIBE #");
    sub.barrier();
    pub.send_frame("PUBLISH ERROR: you have been disconnected");
    CHECK(pub.read_frame() ==
          "ERROR: Topics ERROR:, OK: and RESTORED are reserved: their "
          "messages would read as the broker's replies");
    pub.send_frame("PUBLISH news still here");
    CHECK(sub.read_frame() == "news still here");
    CHECK_FALSE(sub.read_frame(200ms).has_value());
}
