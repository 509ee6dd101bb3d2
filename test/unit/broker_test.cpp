#include "pubsubx/broker.hpp"

#include <doctest/doctest.h>

#include <cstdio>
#include <string>
#include <vector>

#include "pubsubx/protocol.hpp"

using namespace pubsubx;
using namespace std::chrono_literals;

namespace {

class FakeConnection final : public Connection {
  public:
    explicit FakeConnection(Broker& broker) : broker_(broker) {}
    void outbound_ready() override { ++ready_calls; }

    FrameResult send(std::string_view frame, TimePoint now = TimePoint{}) {
        return broker_.handle_frame(*this, frame, now);
    }
    // Everything the broker queued for this connection since the last call, as frames.
    std::vector<std::string> received() {
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
    void lose(TimePoint now) { broker_.connection_closed(*this, now); }

    int ready_calls = 0;

  private:
    Broker& broker_;
};

using Frames = std::vector<std::string>;

struct Fixture {
    Logger logger{LogLevel::quiet, std::tmpfile()};
    BrokerConfig config = [] {
        BrokerConfig c;
        c.lost_timeout = 10s;
        c.max_queue_bytes = 1024;
        return c;
    }();
    Broker broker{config, logger};
    TimePoint t0{};
};

}  // namespace

TEST_CASE_FIXTURE(Fixture, "a new name is accepted and can publish to a subscriber") {
    FakeConnection alice{broker}, bob{broker};
    CHECK(alice.send("CONNECT alice").next == FrameResult::Next::read_more);
    CHECK(bob.send("CONNECT bob").next == FrameResult::Next::read_more);
    CHECK(alice.received() == Frames{"OK: Conn accepted"});
    CHECK(bob.received() == Frames{"OK: Conn accepted"});
    bob.send("SUBSCRIBE news");
    alice.send("PUBLISH news hello  world");
    alice.send("PUBLISH other ignored");
    CHECK(bob.received() == Frames{"news hello  world"});
    CHECK(alice.received().empty());
    CHECK(broker.stats().published == 2);
}

TEST_CASE_FIXTURE(Fixture, "a publisher subscribed to its topic gets its own messages") {
    FakeConnection alice{broker};
    alice.send("CONNECT alice");
    alice.send("SUBSCRIBE t");
    alice.send("PUBLISH t");
    CHECK(alice.received() == Frames{"OK: Conn accepted", "t "});
}

TEST_CASE_FIXTURE(Fixture, "subscribe and unsubscribe are idempotent") {
    FakeConnection alice{broker}, bob{broker};
    alice.send("CONNECT alice");
    bob.send("CONNECT bob");
    bob.send("SUBSCRIBE t");
    bob.send("SUBSCRIBE t");
    REQUIRE(broker.find_topic("t") != nullptr);
    CHECK(broker.find_topic("t")->subscribers.size() == 1);
    alice.send("PUBLISH t once");
    CHECK(bob.received() == Frames{"OK: Conn accepted", "t once"});
    bob.send("UNSUBSCRIBE t");
    bob.send("UNSUBSCRIBE t");
    bob.send("UNSUBSCRIBE never");
    CHECK(broker.find_topic("t") == nullptr);
    alice.send("PUBLISH t gone");
    CHECK(bob.received().empty());
}

TEST_CASE_FIXTURE(Fixture, "frames without an argument and unknown commands are not acted on") {
    FakeConnection alice{broker};
    alice.send("CONNECT alice");
    alice.received();
    alice.send("SUBSCRIBE");
    alice.send("PUBLISH  t");
    alice.send("subscribe t");
    alice.send("HELLO there");
    alice.send("CONNECT other");
    CHECK(broker.topic_count() == 0);
    CHECK(broker.client_count() == 1);
    CHECK(alice.received().empty());
}

TEST_CASE_FIXTURE(Fixture, "a first frame that is not a valid CONNECT closes the connection") {
    FakeConnection c{broker};
    CHECK(c.send("").next == FrameResult::Next::read_more);  // empty frames are ignored
    CHECK(c.send("SUBSCRIBE t").next == FrameResult::Next::close);
    FakeConnection d{broker};
    CHECK(d.send("CONNECT").next == FrameResult::Next::close);
    FakeConnection e{broker};
    const FrameResult long_name = e.send("CONNECT " + std::string(65, 'n'));
    CHECK(long_name.next == FrameResult::Next::close);
    CHECK(long_name.error_frame.starts_with("ERROR: "));
    CHECK(broker.client_count() == 0);
}

TEST_CASE_FIXTURE(Fixture, "a connected name is taken") {
    FakeConnection first{broker}, second{broker};
    first.send("CONNECT alice");
    const FrameResult result = second.send("CONNECT alice");
    CHECK(result.next == FrameResult::Next::close);
    CHECK(result.error_frame == "ERROR: Name already taken");
    CHECK(second.client() == nullptr);
    CHECK(first.client() == broker.find_client("alice"));
}

TEST_CASE_FIXTURE(Fixture, "a lost client is restored with its topics and queued messages") {
    FakeConnection pub{broker}, sub{broker};
    pub.send("CONNECT pub");
    sub.send("CONNECT sub");
    sub.send("SUBSCRIBE a");
    sub.send("SUBSCRIBE b");
    sub.received();
    sub.lose(t0);
    CHECK(broker.next_expiry() == t0 + 10s);
    pub.send("PUBLISH a 1");
    pub.send("PUBLISH b 2");
    pub.send("PUBLISH a 3");

    FakeConnection back{broker};
    back.send("CONNECT sub", t0 + 9s);
    CHECK(back.ready_calls > 0);
    CHECK(back.received() == Frames{"RESTORED sub", "a b", "a 1", "b 2", "a 3"});
    pub.send("PUBLISH b live");
    CHECK(back.received() == Frames{"b live"});
    // The old FIFO entry no longer expires the restored client.
    broker.expire_lost_clients(t0 + 11s);
    CHECK(broker.find_client("sub") != nullptr);
    CHECK(broker.stats().clients_restored == 1);
}

TEST_CASE_FIXTURE(Fixture, "a lost client with no subscriptions is restored with an empty list") {
    FakeConnection c{broker};
    c.send("CONNECT c");
    c.received();
    c.lose(t0);
    FakeConnection back{broker};
    back.send("CONNECT c");
    CHECK(back.received() == Frames{"RESTORED c", ""});
}

TEST_CASE_FIXTURE(Fixture, "a lost client expires at the end of the retention period") {
    FakeConnection pub{broker}, sub{broker};
    pub.send("CONNECT pub");
    sub.send("CONNECT sub");
    sub.send("SUBSCRIBE a");
    sub.lose(t0);
    pub.send("PUBLISH a queued");
    broker.expire_lost_clients(t0 + 9s);
    CHECK(broker.find_client("sub") != nullptr);
    broker.expire_lost_clients(t0 + 10s);
    CHECK(broker.find_client("sub") == nullptr);
    CHECK(broker.find_topic("a") == nullptr);
    CHECK_FALSE(broker.next_expiry().has_value());
    FakeConnection again{broker};
    again.send("CONNECT sub");
    CHECK(again.received() == Frames{"OK: Conn accepted"});
}

TEST_CASE_FIXTURE(Fixture, "lost, restored and lost again expires from the second loss") {
    FakeConnection c{broker};
    c.send("CONNECT c");
    c.lose(t0);
    FakeConnection second{broker};
    second.send("CONNECT c", t0 + 5s);
    second.lose(t0 + 5s);
    broker.expire_lost_clients(t0 + 10s);
    CHECK(broker.find_client("c") != nullptr);
    CHECK(broker.next_expiry() == t0 + 15s);
    broker.expire_lost_clients(t0 + 15s);
    CHECK(broker.find_client("c") == nullptr);
}

TEST_CASE_FIXTURE(Fixture, "DISCONNECT forgets the client at once") {
    FakeConnection c{broker};
    c.send("CONNECT c");
    c.send("SUBSCRIBE t");
    CHECK(c.send("DISCONNECT").next == FrameResult::Next::close);
    CHECK(c.client() == nullptr);
    CHECK(broker.find_client("c") == nullptr);
    CHECK(broker.find_topic("t") == nullptr);
    c.lose(t0);  // the socket closing afterwards changes nothing
    CHECK_FALSE(broker.next_expiry().has_value());
}

TEST_CASE("a zero retention period removes a lost client at once") {
    Logger logger{LogLevel::quiet, std::tmpfile()};
    BrokerConfig config;
    config.lost_timeout = Clock::duration::zero();
    Broker broker{config, logger};
    FakeConnection c{broker};
    c.send("CONNECT c");
    c.lose(TimePoint{});
    CHECK(broker.find_client("c") == nullptr);
}

TEST_CASE_FIXTURE(Fixture, "a full queue drops the oldest messages and counts them") {
    FakeConnection pub{broker}, sub{broker};
    pub.send("CONNECT pub");
    sub.send("CONNECT sub");
    sub.send("SUBSCRIBE t");
    sub.received();
    sub.lose(t0);
    const std::string payload(90, 'p');  // "t " + 90 + delimiter = 95 bytes: 10 fit in 1024
    for (int i = 0; i < 20; ++i) {
        pub.send("PUBLISH t " + std::to_string(i + 10) + payload);
    }
    CHECK(broker.stats().dropped == 10);
    FakeConnection back{broker};
    back.send("CONNECT sub");
    const Frames frames = back.received();
    REQUIRE(frames.size() == 12);
    CHECK(frames[2] == "t 20" + payload);
    CHECK(frames[11] == "t 29" + payload);
}

TEST_CASE_FIXTURE(Fixture, "the delivery frame is the same bytes for every subscriber") {
    FakeConnection pub{broker};
    pub.send("CONNECT pub");
    std::vector<std::unique_ptr<FakeConnection>> subs;
    for (int i = 0; i < 5; ++i) {
        subs.push_back(std::make_unique<FakeConnection>(broker));
        subs.back()->send("CONNECT s" + std::to_string(i));
        subs.back()->send("SUBSCRIBE t");
        subs.back()->received();
    }
    pub.send("PUBLISH t x");
    for (auto& sub : subs) {
        CHECK(sub->received() == Frames{"t x"});
    }
    CHECK(broker.stats().delivered == 5);
}
