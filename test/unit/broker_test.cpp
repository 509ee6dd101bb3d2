#include "pubsubx/broker.hpp"

#include <doctest/doctest.h>

#include <cstdio>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "broker_fixture.hpp"
#include "pubsubx/protocol.hpp"

using namespace pubsubx;
using namespace pubsubx::test_support;
using namespace std::chrono_literals;

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

// The server hands frames over with their delimiter after them, and a PUBLISH's delivery frame
// is then taken from the frame itself (issue 16); without it, the broker encodes it.
TEST_CASE("a PUBLISH is delivered the same with or without its delimiter after it") {
    Logger logger{LogLevel::quiet, std::tmpfile()};
    BrokerConfig config = test_config();
    config.max_queue_bytes = 1024 * 1024;
    Broker broker{config, logger};
    FakeConnection alice{broker}, bob{broker};
    alice.send("CONNECT alice");
    bob.send("CONNECT bob");
    bob.send("SUBSCRIBE t");
    bob.received();
    const Frames publishes{"PUBLISH t data",
                           "PUBLISH t",
                           "PUBLISH t ",
                           "PUBLISH t  two  spaces ",
                           std::string{"PUBLISH t nul\0byte", 18},
                           "PUBLISH t " + std::string(70'000, 'x')};
    Frames expected;
    for (const std::string& frame : publishes) {
        expected.push_back(frame.substr(std::string_view{"PUBLISH "}.size()));
    }
    expected[1] = "t ";  // no second space: the data is empty and the frame gets one
    for (const std::string& frame : publishes) {
        alice.send(frame);
    }
    CHECK(bob.received() == expected);
    for (const std::string& frame : publishes) {
        alice.send_undelimited(frame);
    }
    CHECK(bob.received() == expected);
}

// Routing::find_published remembers the last topic published to (issue 16): a topic that goes
// and comes back, under the same name or another at the same address, must be found anew.
TEST_CASE_FIXTURE(Fixture, "a topic published to again after it went and came back is found anew") {
    FakeConnection alice{broker}, bob{broker}, carol{broker};
    alice.send("CONNECT alice");
    bob.send("CONNECT bob");
    carol.send("CONNECT carol");
    bob.send("SUBSCRIBE t");
    alice.send("PUBLISH t 1");
    bob.send("UNSUBSCRIBE t");
    alice.send("PUBLISH t 2");  // no subscriber: published to nobody
    carol.send("SUBSCRIBE u");  // may take the freed record's address
    alice.send("PUBLISH t 3");
    carol.send("SUBSCRIBE t");
    alice.send("PUBLISH t 4");
    alice.send("PUBLISH u 5");
    alice.send("PUBLISH t 6");
    CHECK(bob.received() == Frames{"OK: Conn accepted", "t 1"});
    CHECK(carol.received() == Frames{"OK: Conn accepted", "t 4", "u 5", "t 6"});
    CHECK(broker.check_consistency().empty());
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

TEST_CASE_FIXTURE(Fixture, "DISCONNECT still writes the error frames owed for earlier frames") {
    FakeConnection c{broker};
    c.send("CONNECT c");
    c.received();
    c.send("SUBSCRIBE t");
    c.send("PUBLISH t mine");  // a message queued for c: forgotten with it
    c.send("PUBLISH a/+ x");
    const FrameResult result = c.send("DISCONNECT");
    CHECK(result.next == FrameResult::Next::close);
    CHECK(result.owed_frames == "ERROR: Wildcards are not allowed in a PUBLISH topic\n\nx");
    CHECK(broker.total_queued_bytes() == 0);
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

namespace {

// A broker made after the test changed some settings (make()); the rest as in Fixture.
struct LimitFixture {
    Logger logger{LogLevel::quiet, std::tmpfile()};
    BrokerConfig config = test_config();
    std::optional<Broker> broker;
    TimePoint t0{};

    Broker& make() { return broker.emplace(config, logger); }
};

}  // namespace

TEST_CASE_FIXTURE(Fixture, "a client with a secret is restored only with the same secret") {
    FakeConnection pub{broker}, sub{broker, address(1)};
    pub.send("CONNECT pub");
    sub.send("CONNECT sub s3cret");
    sub.send("SUBSCRIBE t");
    sub.received();
    sub.lose(t0);
    pub.send("PUBLISH t kept");

    FakeConnection thief{broker, address(2)};
    const FrameResult wrong = thief.send("CONNECT sub guess", t0);
    CHECK(wrong.next == FrameResult::Next::close);
    CHECK(wrong.error_frame == "ERROR: Not authorized");
    FakeConnection thief2{broker, address(3)};
    CHECK(thief2.send("CONNECT sub", t0 + 1s).error_frame == "ERROR: Not authorized");
    FakeConnection thief3{broker, address(4)};
    CHECK(thief3.send("CONNECT sub s3cre", t0 + 2s).error_frame == "ERROR: Not authorized");
    CHECK(thief3.client() == nullptr);
    CHECK(broker.stats().auth_failures == 3);

    // The failures neither consumed nor wiped the queue.
    FakeConnection owner{broker, address(1)};
    CHECK(owner.send("CONNECT sub s3cret", t0 + 2s).next == FrameResult::Next::read_more);
    CHECK(owner.received() == Frames{"RESTORED sub", "t", "t kept"});
}

TEST_CASE_FIXTURE(Fixture,
                  "during a back-off the right secret gets the same answer as a wrong one") {
    FakeConnection c{broker, address(1)};
    c.send("CONNECT c right");
    c.lose(t0);
    FakeConnection guess{broker, address(2)};
    CHECK(guess.send("CONNECT c wrong", t0).error_frame == "ERROR: Not authorized");
    // From the same source within 100 ms: refused unchecked, whatever the secret.
    FakeConnection right{broker, address(2)}, wrong{broker, address(2)};
    const FrameResult with_right = right.send("CONNECT c right", t0 + 50ms);
    const std::string right_answer{with_right.error_frame};  // the view lasts one call
    const std::string wrong_answer{wrong.send("CONNECT c wrong2", t0 + 50ms).error_frame};
    CHECK(with_right.next == FrameResult::Next::close);
    CHECK(right_answer == wrong_answer);
    CHECK(right_answer.starts_with("ERROR: Not authorized: too many failed attempts"));
    CHECK(broker.find_client("c")->state() == ClientState::lost);
    CHECK(broker.stats().auth_failures == 1);
    CHECK(broker.stats().auth_throttled == 2);
    // Another stranger's source is held back by the name's back-off too.
    FakeConnection stranger{broker, address(3)};
    CHECK(stranger.send("CONNECT c right", t0 + 50ms).next == FrameResult::Next::close);
    // Once the back-off is over the right secret is checked again, and it resumes.
    FakeConnection later{broker, address(2)};
    CHECK(later.send("CONNECT c right", t0 + 100ms).next == FrameResult::Next::read_more);
}

TEST_CASE_FIXTURE(Fixture,
                  "the back-off doubles per failure up to its ceiling and resets on success") {
    FakeConnection c{broker, address(1)};
    c.send("CONNECT c right");
    c.lose(t0);
    TimePoint now = t0;
    TimePoint last_guess = t0;
    for (int i = 0; i < 12; ++i) {
        FakeConnection guess{broker, address(2)};
        const FrameResult result = guess.send("CONNECT c wrong", now);
        CHECK(result.error_frame == "ERROR: Not authorized");  // each one was checked
        last_guess = now;
        now += 100ms * (1 << std::min(i, 9));  // waits out its back-off
    }
    now = last_guess;
    // The source now waits 30 s (its ceiling).
    FakeConnection early{broker, address(2)};
    CHECK(early.send("CONNECT c wrong", now + 29s)
              .error_frame.starts_with("ERROR: Not authorized: too many failed attempts"));
    FakeConnection owner{broker, address(2)};
    CHECK(owner.send("CONNECT c right", now + 30s).next == FrameResult::Next::read_more);
    owner.lose(now + 30s);
    FakeConnection after{broker, address(2)};
    after.send("CONNECT c wrong", now + 30s);
    FakeConnection retry{broker, address(2)};  // a resume reset the count: 100 ms again
    CHECK(retry.send("CONNECT c right", now + 30s + 100ms).next == FrameResult::Next::read_more);
}

TEST_CASE_FIXTURE(Fixture, "a stranger hammering wrong secrets does not lock the owner out") {
    FakeConnection c{broker, address(1)};
    c.send("CONNECT c right");
    c.lose(t0);
    // Wrong guesses from many sources keep the name's back-off going...
    for (std::uint32_t i = 0; i < 50; ++i) {
        FakeConnection guess{broker, address(10 + i)};
        guess.send("CONNECT c wrong", t0 + std::chrono::milliseconds{i});
    }
    // ...but the owner, from where it last connected, is checked at once.
    FakeConnection owner{broker, address(1)};
    CHECK(owner.send("CONNECT c right", t0 + 60ms).next == FrameResult::Next::read_more);
    CHECK(owner.received().front() == "RESTORED c");
}

TEST_CASE_FIXTURE(Fixture, "the right secret takes over a half-open connection") {
    FakeConnection pub{broker}, old{broker};
    pub.send("CONNECT pub");
    old.send("CONNECT sub key");
    old.send("SUBSCRIBE t");
    old.received();
    pub.send("PUBLISH t unread");

    FakeConnection no_secret{broker};
    CHECK(no_secret.send("CONNECT sub").error_frame == "ERROR: Name already taken");
    FakeConnection wrong{broker, address(9)};
    CHECK(wrong.send("CONNECT sub nope").error_frame == "ERROR: Not authorized");
    CHECK(old.close_reason.empty());

    FakeConnection fresh{broker};
    CHECK(fresh.send("CONNECT sub key", t0 + 1s).next == FrameResult::Next::read_more);
    CHECK_FALSE(old.close_reason.empty());
    CHECK(old.client() == nullptr);
    CHECK(fresh.received() == Frames{"RESTORED sub", "t", "t unread"});
    CHECK(broker.stats().sessions_taken_over == 1);
    old.lose(t0);  // the old socket closing afterwards changes nothing
    CHECK(broker.find_client("sub")->connected());
}

TEST_CASE_FIXTURE(Fixture, "without a secret the original rules stand") {
    FakeConnection first{broker};
    first.send("CONNECT alice");
    first.received();
    FakeConnection with_secret{broker};
    CHECK(with_secret.send("CONNECT alice anything").error_frame == "ERROR: Name already taken");
    first.lose(t0);
    FakeConnection anyone{broker};
    anyone.send("CONNECT alice");
    CHECK(anyone.received() == Frames{"RESTORED alice", ""});
    // A resume with a secret protects the client from then on.
    anyone.lose(t0);
    FakeConnection claims{broker};
    claims.send("CONNECT alice mine");
    claims.lose(t0);
    FakeConnection other{broker};
    CHECK(other.send("CONNECT alice").error_frame == "ERROR: Not authorized");
}

TEST_CASE_FIXTURE(Fixture, "an invalid secret is refused") {
    FakeConnection c{broker};
    const FrameResult result = c.send("CONNECT c two words");
    CHECK(result.next == FrameResult::Next::close);
    CHECK(result.error_frame.starts_with("ERROR: Invalid secret"));
    FakeConnection d{broker};
    CHECK(d.send("CONNECT d " + std::string(129, 's')).next == FrameResult::Next::close);
    FakeConnection e{broker};
    CHECK(e.send("CONNECT e " + std::string(128, 's')).next == FrameResult::Next::read_more);
    CHECK(broker.client_count() == 1);
}

TEST_CASE_FIXTURE(LimitFixture, "require_secret refuses a CONNECT without one") {
    config.require_secret = true;
    Broker& b = make();
    FakeConnection plain{b}, with{b};
    const FrameResult refused = plain.send("CONNECT plain");
    CHECK(refused.next == FrameResult::Next::close);
    CHECK(refused.error_frame.starts_with("ERROR: Not authorized"));
    CHECK(with.send("CONNECT with key").next == FrameResult::Next::read_more);
    CHECK(b.client_count() == 1);
}

TEST_CASE_FIXTURE(LimitFixture, "a topic over the length limit is refused with an error") {
    config.max_topic_length = 8;
    Broker& b = make();
    FakeConnection c{b};
    c.send("CONNECT c");
    c.received();
    c.send("SUBSCRIBE " + std::string(9, 't'));
    c.send("PUBLISH " + std::string(9, 't') + " x");
    c.send("SUBSCRIBE " + std::string(8, 't'));
    CHECK(c.received() == Frames{"ERROR: Topic too long (the limit is 8 bytes)",
                                 "ERROR: Topic too long (the limit is 8 bytes)"});
    CHECK(b.topic_count() == 1);
    CHECK(b.stats().topics_refused == 2);
    CHECK(c.client() != nullptr);  // the connection goes on
}

TEST_CASE_FIXTURE(LimitFixture, "subscriptions per client are limited; 0 means no limit") {
    SUBCASE("limit 2") {
        config.max_topics_per_client = 2;
        Broker& b = make();
        FakeConnection c{b};
        c.send("CONNECT c");
        c.received();
        c.send("SUBSCRIBE a");
        c.send("SUBSCRIBE b");
        c.send("SUBSCRIBE b");  // already subscribed: not an error
        c.send("SUBSCRIBE c");
        CHECK(c.received() == Frames{"ERROR: Too many subscriptions (the limit is 2 per client)"});
        CHECK(c.client()->subscriptions().size() == 2);
        c.send("UNSUBSCRIBE a");
        c.send("SUBSCRIBE c");
        CHECK(c.received().empty());
    }
    SUBCASE("no limit") {
        config.max_topics_per_client = 0;
        config.max_topic_length = 0;
        Broker& b = make();
        FakeConnection c{b};
        c.send("CONNECT c");
        for (int i = 0; i < 20'000; ++i) {
            c.send("SUBSCRIBE " + std::to_string(i) + std::string(1100, 'x'));
        }
        CHECK(b.topic_count() == 20'000);
    }
}

TEST_CASE_FIXTURE(LimitFixture, "beyond the lost-client limit the longest lost is removed") {
    config.max_lost_clients = 2;
    Broker& b = make();
    for (const char* name : {"a", "b", "c"}) {
        FakeConnection c{b};
        c.send(std::string{"CONNECT "} + name);
        c.lose(t0);
    }
    CHECK(b.find_client("a") == nullptr);
    CHECK(b.find_client("b") != nullptr);
    CHECK(b.find_client("c") != nullptr);
    CHECK(b.lost_client_count() == 2);
    CHECK(b.stats().lost_clients_evicted == 1);
    // A restored client no longer counts; its stale FIFO entry does not evict anyone.
    FakeConnection back{b};
    back.send("CONNECT b");
    FakeConnection d{b};
    d.send("CONNECT d");
    d.lose(t0);
    CHECK(b.find_client("c") != nullptr);
    CHECK(b.lost_client_count() == 2);
}

TEST_CASE_FIXTURE(LimitFixture, "a lost-client limit of 0 means no limit") {
    config.max_lost_clients = 0;
    Broker& b = make();
    for (int i = 0; i < 1000; ++i) {
        FakeConnection c{b};
        c.send("CONNECT c" + std::to_string(i));
        c.lose(t0);
    }
    CHECK(b.lost_client_count() == 1000);
    CHECK(b.stats().lost_clients_evicted == 0);
}

TEST_CASE_FIXTURE(Fixture, "first frames that are not a valid CONNECT are counted") {
    for (const char* frame : {"HELLO", "CONNECT", "CONNECT bad\x01name", "CONNECT a b c"}) {
        FakeConnection c{broker};
        CHECK(c.send(frame).next == FrameResult::Next::close);
    }
    CHECK(broker.stats().bad_connects == 4);
}

TEST_CASE_FIXTURE(LimitFixture, "the global cap bounds all queues together") {
    config.max_queue_bytes = 0;  // no per-client bound: only the global one
    config.max_total_queue_bytes = 1000;
    Broker& b = make();
    FakeConnection pub{b}, live{b};
    pub.send("CONNECT pub");
    pub.received();
    live.send("CONNECT live");
    live.send("SUBSCRIBE t");
    live.received();
    for (const char* name : {"x", "y"}) {
        FakeConnection sub{b};
        sub.send(std::string{"CONNECT "} + name);
        sub.send("SUBSCRIBE t");
        sub.received();
        sub.lose(t0);
    }
    const std::string payload(95, 'p');  // 100 bytes per frame with "t " and the delimiter
    Frames live_frames;
    for (int i = 0; i < 10; ++i) {
        pub.send("PUBLISH t " + std::to_string(i) + payload.substr(1));
        CHECK(b.total_queued_bytes() <= 1000);
        for (std::string& frame : live.received()) {
            live_frames.push_back(std::move(frame));
        }
    }
    // The lost clients held at most three quarters of the cap (7 frames of 100 bytes), and
    // the connected subscriber, which keeps up, lost nothing.
    CHECK(live_frames.size() == 10);
    CHECK(b.stats().delivered == 30);
    CHECK(b.stats().dropped == 13);
    CHECK(b.stats().dropped_global_cap == 13);
    FakeConnection back{b};
    back.send("CONNECT y");
    const Frames frames = back.received();
    REQUIRE(frames.size() >= 3);
    CHECK(frames.back() == "t 9" + payload.substr(1));  // the newest is kept
}

TEST_CASE_FIXTURE(LimitFixture, "lost clients cannot starve connected ones under the global cap") {
    config.max_queue_bytes = 0;
    config.max_total_queue_bytes = 10'000;
    Broker& b = make();
    FakeConnection pub{b}, live{b};
    pub.send("CONNECT pub");
    live.send("CONNECT live");
    live.send("SUBSCRIBE t");
    for (int i = 0; i < 50; ++i) {  // a crowd of clients that vanish, all on the busy topic
        FakeConnection ghost{b};
        ghost.send("CONNECT ghost" + std::to_string(i));
        ghost.send("SUBSCRIBE t");
        ghost.received();
        ghost.lose(t0);
    }
    pub.received();
    live.received();
    long live_received = 0;
    for (int i = 0; i < 1000; ++i) {
        pub.send("PUBLISH t " + std::string(200, 'p'));
        live_received += static_cast<long>(live.received().size());
    }
    CHECK(live_received == 1000);
    CHECK(b.total_queued_bytes() <= 10'000);
}

TEST_CASE_FIXTURE(LimitFixture, "the global cap: 0 means no limit") {
    config.max_queue_bytes = 0;
    config.max_total_queue_bytes = 0;
    Broker& b = make();
    FakeConnection pub{b}, sub{b};
    pub.send("CONNECT pub");
    sub.send("CONNECT sub");
    sub.send("SUBSCRIBE t");
    sub.lose(t0);
    for (int i = 0; i < 2000; ++i) {
        pub.send("PUBLISH t " + std::string(1000, 'p'));
    }
    CHECK(b.stats().dropped == 0);
    CHECK(b.total_queued_bytes() > 2'000'000);
}

TEST_CASE_FIXTURE(LimitFixture, "a consumer whose queue stays full past the grace is cut off") {
    config.slow_consumer_grace = 2s;
    Broker& b = make();
    FakeConnection pub{b}, slow{b};
    pub.send("CONNECT pub");
    slow.send("CONNECT slow");
    slow.send("SUBSCRIBE t");
    slow.received();
    const std::string payload(95, 'p');
    for (int i = 0; i < 11; ++i) {  // the 11th overflows at t0
        pub.send("PUBLISH t " + payload, t0);
    }
    pub.send("PUBLISH t " + payload, t0 + 1s);
    CHECK(slow.close_reason.empty());
    CHECK(b.find_client("slow")->connected());
    pub.send("PUBLISH t newest" + payload, t0 + 2s);
    CHECK(slow.close_reason == "cut off");
    CHECK(slow.client() == nullptr);
    CHECK(b.stats().slow_consumers_cut == 1);
    CHECK(b.lost_client_count() == 1);
    FakeConnection back{b};
    back.send("CONNECT slow", t0 + 3s);
    const Frames frames = back.received();
    REQUIRE(frames.size() == 12);
    CHECK(frames.back() == "t newest" + payload);  // it kept its newest messages
}

TEST_CASE_FIXTURE(LimitFixture, "a consumer that catches up starts a new grace period") {
    config.slow_consumer_grace = 2s;
    Broker& b = make();
    FakeConnection pub{b}, sub{b};
    pub.send("CONNECT pub");
    sub.send("CONNECT sub");
    sub.send("SUBSCRIBE t");
    const std::string payload(95, 'p');
    for (int i = 0; i < 12; ++i) {
        pub.send("PUBLISH t " + payload, t0);
    }
    sub.received();  // the whole queue was written out
    for (int i = 0; i < 12; ++i) {
        pub.send("PUBLISH t " + payload, t0 + 3s);
    }
    CHECK(sub.close_reason.empty());
}

TEST_CASE_FIXTURE(LimitFixture, "a grace of 0 never cuts a consumer off") {
    config.slow_consumer_grace = 0s;
    Broker& b = make();
    FakeConnection pub{b}, sub{b};
    pub.send("CONNECT pub");
    sub.send("CONNECT sub");
    sub.send("SUBSCRIBE t");
    for (int i = 0; i < 100; ++i) {
        pub.send("PUBLISH t " + std::string(100, 'p'), t0 + std::chrono::seconds{i});
    }
    CHECK(sub.close_reason.empty());
    CHECK(b.stats().dropped > 0);
}

TEST_CASE_FIXTURE(LimitFixture, "a slow consumer that publishes is cut off safely") {
    config.slow_consumer_grace = 1s;
    config.lost_timeout = 0s;  // cut off, then removed at once with its topics
    Broker& b = make();
    FakeConnection me{b};
    me.send("CONNECT me");
    me.send("SUBSCRIBE t");
    for (int i = 0; i < 20; ++i) {
        me.send("PUBLISH t " + std::string(100, 'p'), t0 + std::chrono::seconds{i});
    }
    CHECK(me.close_reason == "cut off");
    CHECK(b.find_client("me") == nullptr);
    CHECK(b.topic_count() == 0);
}

TEST_CASE_FIXTURE(Fixture, "an earlier client's loss never expires a later client of that name") {
    FakeConnection first{broker};
    first.send("CONNECT x");
    first.lose(t0);  // would expire at t0 + 10 s
    FakeConnection back{broker};
    back.send("CONNECT x", t0 + 1s);
    back.send("DISCONNECT", t0 + 2s);
    FakeConnection second{broker};
    second.send("CONNECT x", t0 + 8s);
    second.lose(t0 + 8s);  // a new client: expires at t0 + 18 s
    fire_expiry(broker, t0 + 10s);
    CHECK(broker.find_client("x") != nullptr);
    fire_expiry(broker, t0 + 18s - 1ns);
    CHECK(broker.find_client("x") != nullptr);
    fire_expiry(broker, t0 + 18s);
    CHECK(broker.find_client("x") == nullptr);
}

TEST_CASE_FIXTURE(LimitFixture, "the lost-client limit evicts the longest lost, not a namesake") {
    config.max_lost_clients = 2;
    Broker& b = make();
    FakeConnection x{b};
    x.send("CONNECT x");
    x.lose(t0);
    FakeConnection x_back{b};
    x_back.send("CONNECT x", t0 + 1s);
    x_back.send("DISCONNECT", t0 + 1s);
    for (const char* name : {"y", "x", "z"}) {  // x again: a new client, lost after y
        FakeConnection c{b};
        c.send(std::string{"CONNECT "} + name, t0 + 2s);
        c.lose(t0 + 2s);
    }
    CHECK(b.find_client("y") == nullptr);  // the longest lost
    CHECK(b.find_client("x") != nullptr);
    CHECK(b.find_client("z") != nullptr);
}

TEST_CASE_FIXTURE(Fixture, "a name that flaps leaves one lost record, whatever the count") {
    for (int i = 0; i < 1000; ++i) {
        FakeConnection c{broker};
        c.send("CONNECT flap", t0 + std::chrono::milliseconds{i});
        c.lose(t0 + std::chrono::milliseconds{i});
    }
    CHECK(broker.lost_client_count() == 1);
    CHECK(broker.check_consistency().empty());
    CHECK(broker.find_client("flap")->lost_record()->deadline == t0 + 999ms + 10s);
}

TEST_CASE_FIXTURE(LimitFixture, "every loss leaves the server an expiry to arm") {
    config.slow_consumer_grace = 1s;
    Broker& b = make();
    FakeConnection pub{b}, slow{b};
    pub.send("CONNECT pub");
    slow.send("CONNECT slow");
    slow.send("SUBSCRIBE t");
    for (int i = 0; i < 30; ++i) {  // overflows, then past the grace: cut off, not by its socket
        pub.send("PUBLISH t " + std::string(100, 'p'), t0 + std::chrono::milliseconds{100 * i});
    }
    REQUIRE(b.lost_client_count() == 1);
    const TimePoint deadline = *b.next_expiry();
    REQUIRE(FakeConnection::armed_expiry[&b].has_value());
    CHECK(*FakeConnection::armed_expiry[&b] <= deadline);
    fire_expiry(b, deadline);
    CHECK(b.find_client("slow") == nullptr);
    CHECK(b.check_consistency().empty());
}

TEST_CASE_FIXTURE(LimitFixture, "control frames are never dropped by the global cap") {
    config.max_queue_bytes = 0;
    config.max_total_queue_bytes = 1000;
    config.max_topic_length = 4;
    Broker& b = make();
    FakeConnection pub{b}, hog{b};
    pub.send("CONNECT pub");
    pub.received();
    hog.send("CONNECT hog");
    hog.send("SUBSCRIBE t");
    hog.received();
    for (int i = 0; i < 20; ++i) {  // a connected client that does not read fills the cap
        pub.send("PUBLISH t " + std::string(100, 'p'));
    }
    CHECK(b.total_queued_bytes() >= 900);
    FakeConnection late{b};
    late.send("CONNECT late");
    late.send("SUBSCRIBE too-long");
    CHECK(late.received() ==
          Frames{"OK: Conn accepted", "ERROR: Topic too long (the limit is 4 bytes)"});
    hog.send("SUBSCRIBE too-long");
    const Frames hog_frames = hog.received();
    REQUIRE_FALSE(hog_frames.empty());
    CHECK(hog_frames.front() == "ERROR: Topic too long (the limit is 4 bytes)");
}

TEST_CASE_FIXTURE(LimitFixture, "bytes in a write in flight count against the client's bound") {
    config.max_queue_bytes = 1000;
    Broker& b = make();
    FakeConnection pub{b}, sub{b};
    pub.send("CONNECT pub");
    pub.received();
    sub.send("CONNECT sub");
    sub.send("SUBSCRIBE t");
    sub.received();
    const std::string payload(95, 'p');  // 100-byte frames
    for (int i = 0; i < 10; ++i) {
        pub.send("PUBLISH t " + payload);
    }
    CHECK(sub.start_write().size() == 5);  // a write takes at most half the bound
    for (int i = 0; i < 10; ++i) {
        pub.send("PUBLISH t " + payload);
    }
    CHECK(b.find_client("sub")->held_message_bytes() == 1000);  // 500 in flight, 500 queued
    CHECK(b.total_queued_bytes() == 1000);
    sub.complete_write(t0);
    CHECK(b.total_queued_bytes() == 500);
    CHECK(sub.received() == Frames(5, "t " + payload));  // the newest five
    CHECK(b.total_queued_bytes() == 0);
    CHECK(b.check_consistency().empty());
}

TEST_CASE_FIXTURE(LimitFixture, "a write that starts does not end an overflow episode") {
    config.slow_consumer_grace = 2s;
    Broker& b = make();
    FakeConnection pub{b}, sub{b};
    pub.send("CONNECT pub");
    sub.send("CONNECT sub");
    sub.send("SUBSCRIBE t");
    sub.received();
    const std::string payload(95, 'p');
    for (int i = 0; i < 12; ++i) {  // overflows at t0
        pub.send("PUBLISH t " + payload, t0);
    }
    sub.start_write();  // a reader slower than the publishers: its write never completes
    for (int i = 0; i < 12; ++i) {
        pub.send("PUBLISH t " + payload, t0 + 1s);
    }
    CHECK(sub.close_reason.empty());
    pub.send("PUBLISH t " + payload, t0 + 2s);  // the grace ran from the first drop
    CHECK(sub.close_reason == "cut off");
    CHECK(b.stats().slow_consumers_cut == 1);
}

TEST_CASE_FIXTURE(LimitFixture,
                  "a lost client gets the newest message when lost clients fill their share") {
    config.max_queue_bytes = 0;
    config.max_total_queue_bytes = 1000;  // lost clients: 750 bytes
    Broker& b = make();
    FakeConnection pub{b};
    pub.send("CONNECT pub");
    for (const char* name : {"old", "new"}) {
        FakeConnection c{b};
        c.send(std::string{"CONNECT "} + name);
        c.send(std::string{"SUBSCRIBE "} + name);
        c.lose(t0);
    }
    const std::string payload(95, 'p');
    for (int i = 0; i < 10; ++i) {
        pub.send("PUBLISH old " + std::to_string(i) + payload.substr(1));  // 102 bytes each
    }
    pub.send("PUBLISH new newest");
    FakeConnection back{b};
    back.send("CONNECT new");
    CHECK(back.received() == Frames{"RESTORED new", "new", "new newest"});
    CHECK(b.check_consistency().empty());
}

TEST_CASE_FIXTURE(Fixture, "40,000 subscribers of one topic expire together, each in O(1)") {
    config.max_lost_clients = 0;
    Broker b{config, logger};
    for (int i = 0; i < 40'000; ++i) {
        FakeConnection c{b};
        c.send("CONNECT s" + std::to_string(i));
        c.send("SUBSCRIBE t");
        c.send("SUBSCRIBE u" + std::to_string(i % 7));
        c.lose(t0);
    }
    CHECK(b.find_topic("t")->subscribers.size() == 40'000);
    CHECK(b.check_consistency().empty());
    fire_expiry(b, t0 + 10s);
    CHECK(b.client_count() == 0);
    CHECK(b.topic_count() == 0);
}

TEST_CASE_FIXTURE(Fixture, "unsubscribing from the middle keeps both links right") {
    std::vector<std::unique_ptr<FakeConnection>> subs;
    for (int i = 0; i < 5; ++i) {
        subs.push_back(std::make_unique<FakeConnection>(broker));
        subs.back()->send("CONNECT s" + std::to_string(i));
        for (const char* topic : {"a", "b", "c"}) {
            subs.back()->send(std::string{"SUBSCRIBE "} + topic);
        }
    }
    subs[1]->send("UNSUBSCRIBE b");
    subs[3]->send("UNSUBSCRIBE a");
    subs[0]->send("DISCONNECT");
    CHECK(broker.check_consistency().empty());
    subs[1]->lose(t0);
    FakeConnection back{broker};
    back.send("CONNECT s1");
    CHECK(back.received() == Frames{"RESTORED s1", "a c"});
}

TEST_CASE("the global cap episode ends when bytes are released, however they are") {
    std::FILE* const log = std::tmpfile();
    Logger logger{LogLevel::quiet, log};
    const TimePoint t0{};
    BrokerConfig config = test_config();
    config.max_queue_bytes = 0;
    config.max_total_queue_bytes = 1000;
    Broker b{config, logger};
    FakeConnection pub{b};
    pub.send("CONNECT pub");
    pub.received();
    const auto fill_with_lost_subscriber = [&](const std::string& name, TimePoint at) {
        FakeConnection c{b};
        c.send("CONNECT " + name, at);
        c.send("SUBSCRIBE " + name, at);
        c.lose(at);
        for (int i = 0; i < 20; ++i) {
            pub.send("PUBLISH " + name + " " + std::string(95, 'p'), at);
        }
    };
    fill_with_lost_subscriber("first", t0);
    fire_expiry(b, t0 + 10s);  // its bytes go with it; no write ever starts
    CHECK(b.total_queued_bytes() == 0);
    fill_with_lost_subscriber("second", t0 + 11s);
    std::rewind(log);
    std::string text;
    for (int c = std::fgetc(log); c != EOF; c = std::fgetc(log)) {
        text.push_back(static_cast<char>(c));
    }
    std::size_t episodes = 0;
    for (std::size_t at = text.find("reached the global cap"); at != std::string::npos;
         at = text.find("reached the global cap", at + 1)) {
        ++episodes;
    }
    CHECK(episodes == 2);
}

TEST_CASE_FIXTURE(Fixture, "a topic with control bytes or invalid UTF-8 gets an error frame") {
    FakeConnection c{broker}, sub{broker};
    c.send("CONNECT c");
    c.received();
    sub.send("CONNECT sub");
    sub.send("SUBSCRIBE ok");
    sub.received();
    const std::string bad_topics[] = {
        std::string{"a\0b", 3}, "esc\x1b[31m", "cr\rlf", "\x01", "bad\xc3(",
        "\xed\xa0\x80",         "\xc0\xaf"};
    for (const std::string& topic : bad_topics) {
        c.send("SUBSCRIBE " + topic);
        c.send("PUBLISH " + topic + " data");
        c.send("UNSUBSCRIBE " + topic);
        CHECK(c.received() == Frames(3, "ERROR: Invalid topic (UTF-8 with no control characters)"));
    }
    CHECK(broker.topic_count() == 1);
    CHECK(broker.stats().topics_refused == 21);
    c.send("PUBLISH ok caf\xc3\xa9 \x01 data stays bytes");  // data is not checked
    CHECK(sub.received() == Frames{"ok caf\xc3\xa9 \x01 data stays bytes"});
    c.send("SUBSCRIBE caf\xc3\xa9");
    CHECK(c.received().empty());
    CHECK(c.client() != nullptr);
}

TEST_CASE_FIXTURE(Fixture, "a client whose RESTORED reply is over 64 KiB is restored") {
    FakeConnection sub{broker};
    sub.send("CONNECT sub");
    const std::string pad(1000, 'x');
    for (int i = 0; i < 70; ++i) {
        sub.send("SUBSCRIBE " + pad + std::to_string(i));
    }
    sub.received();
    sub.lose(t0);
    FakeConnection back{broker};
    CHECK(back.send("CONNECT sub", t0 + 1s).next == FrameResult::Next::read_more);
    CHECK(back.close_reason.empty());
    CHECK(back.client() != nullptr);
    // Frames after the CONNECT in the same read act for the restored client.
    back.send("CONNECT evil", t0 + 1s);
    CHECK(broker.find_client("evil") == nullptr);
    CHECK(broker.stats().control_backlog_cut == 0);
    CHECK(broker.check_consistency().empty());
}

TEST_CASE_FIXTURE(LimitFixture,
                  "unread error frames beyond 64 KiB cut a client off, and it reads no more") {
    config.max_topic_length = 4;
    Broker& b = make();
    FakeConnection c{b};
    c.send("CONNECT c");
    c.start_write();  // a write that never completes: the client does not read
    FrameResult result;
    int sent = 0;
    while (result.next == FrameResult::Next::read_more && sent < 10'000) {
        result = c.send("SUBSCRIBE too-long");
        ++sent;
    }
    CHECK(result.next == FrameResult::Next::close);
    CHECK(c.close_reason == "cut off");
    CHECK(b.stats().control_backlog_cut == 1);
    CHECK(b.find_client("c")->state() == ClientState::lost);
    CHECK(sent > 1000);  // 64 KiB of 45-byte error frames
}

TEST_CASE_FIXTURE(LimitFixture, "an episode the last write left open ends once the socket drains") {
    config.max_queue_bytes = 1024;
    config.slow_consumer_grace = 2s;
    Broker& b = make();
    FakeConnection pub{b}, sub{b};
    pub.send("CONNECT pub");
    sub.send("CONNECT sub");
    sub.send("SUBSCRIBE t");
    sub.received();
    const std::string payload(95, 'p');
    for (int i = 0; i < 12; ++i) {  // a burst: the 11th and 12th drop at t0
        pub.send("PUBLISH t " + payload, t0);
    }
    REQUIRE(b.find_client("sub")->in_overflow());
    // The writes complete while the socket still holds 100 KiB: not caught up yet.
    while (!sub.start_write().empty()) {
        b.write_completed(sub, t0 + 10ms, 100 * 1024);
    }
    CHECK(b.find_client("sub")->in_overflow());
    // The server's sweep finds the socket drained a moment later: the episode ends.
    b.socket_drained(sub, t0 + 200ms, 0);
    CHECK_FALSE(b.find_client("sub")->in_overflow());
    // Ten minutes later a burst starts a new episode, with a new grace.
    for (int i = 0; i < 12; ++i) {
        pub.send("PUBLISH t " + payload, t0 + 600s);
    }
    CHECK(sub.close_reason.empty());
    CHECK(b.stats().slow_consumers_cut == 0);
}

// Issue 16: a large message is encoded once and shared by the queues of its subscribers.
TEST_CASE_FIXTURE(LimitFixture, "large messages are shared by the queues, counted whole for each") {
    config.max_queue_bytes = 64 * 1024;
    Broker& b = make();
    FakeConnection pub{b}, s1{b}, s2{b}, s3{b};
    pub.send("CONNECT pub");
    pub.received();
    int i = 0;
    for (FakeConnection* sub : {&s1, &s2, &s3}) {
        sub->send("CONNECT s" + std::to_string(++i));
        sub->send("SUBSCRIBE t");
        sub->received();
    }
    const std::string big(10'000, 'b');  // frames of 10,005 bytes with "t " and the delimiter
    pub.send("PUBLISH t " + big);
    pub.send("PUBLISH t small");
    pub.send("PUBLISH t " + big);
    const std::size_t per_client = 2 * 10'005 + std::string{"t small\n\nx"}.size();
    CHECK(b.total_queued_bytes() == 3 * per_client);
    CHECK(b.find_client("s1")->outbound().shared_count() == 2);
    CHECK(b.find_client("s1")->outbound().message_count() == 3);
    CHECK(b.check_consistency().empty());

    // A lost client's queue is copied into one buffer: the same bytes, the same totals.
    s3.lose(t0);
    CHECK(b.find_client("s3")->outbound().shared_count() == 0);
    CHECK(b.total_queued_bytes() == 3 * per_client);
    CHECK(b.check_consistency().empty());
    CHECK(s1.received() == Frames{"t " + big, "t small", "t " + big});
    CHECK(b.total_queued_bytes() == 2 * per_client);

    // Under the bound the oldest go, shared or not: s2 does not read, 64 KiB hold six.
    for (int k = 0; k < 8; ++k) {
        pub.send("PUBLISH t " + std::to_string(k) + big.substr(1));
    }
    CHECK(b.find_client("s2")->outbound().message_count() == 6);
    CHECK(b.find_client("s3")->outbound().shared_count() == 0);  // lost: copies
    // s2 and s3 dropped their 3 earlier messages and the 2 oldest new ones, s1 (which had read
    // the 3) the 2 oldest new ones.
    CHECK(b.stats().dropped == 5 + 5 + 2);
    CHECK(b.check_consistency().empty());
    Frames expected;
    for (int k = 2; k < 8; ++k) {
        expected.push_back("t " + std::to_string(k) + big.substr(1));
    }
    CHECK(s2.received() == expected);
    FakeConnection back{b};
    back.send("CONNECT s3");
    Frames restored = back.received();
    REQUIRE(restored.size() == 8);
    CHECK(restored[0] == "RESTORED s3");
    CHECK(restored[1] == "t");
    CHECK(Frames(restored.begin() + 2, restored.end()) == expected);
    CHECK(s1.received() == expected);
    CHECK(b.total_queued_bytes() == 0);
    CHECK(b.check_consistency().empty());
}
