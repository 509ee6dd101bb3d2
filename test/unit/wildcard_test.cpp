// Wildcard subscriptions and the `$SYS` namespace in the broker core (docs/protocol.md#wildcards).
#include <doctest/doctest.h>

#include <list>
#include <string>

#include "broker_fixture.hpp"

using namespace pubsubx;
using namespace pubsubx::test_support;
using namespace std::chrono_literals;

namespace {

// A publisher and a subscriber, both connected and their accept replies read.
struct WildcardFixture : Fixture {
    FakeConnection pub{broker}, sub{broker};

    WildcardFixture() {
        pub.send("CONNECT pub");
        sub.send("CONNECT sub");
        pub.received();
        sub.received();
    }
    ~WildcardFixture() { CHECK(broker.check_consistency() == ""); }

    // Another connection, kept until the check above: the broker may still point at it.
    FakeConnection& connect(const std::string& name, TimePoint now = TimePoint{}) {
        FakeConnection& connection = more.emplace_back(broker);
        connection.send("CONNECT " + name, now);
        return connection;
    }

    std::list<FakeConnection> more;
};

}  // namespace

TEST_CASE_FIXTURE(WildcardFixture, "`+` matches one level and a last `#` its parent and below") {
    sub.send("SUBSCRIBE s/+/temp");
    sub.send("SUBSCRIBE a/#");
    pub.send("PUBLISH s/1/temp 21");
    pub.send("PUBLISH s/1/humidity 40");
    pub.send("PUBLISH s/1/temp/x no");
    pub.send("PUBLISH a yes");
    pub.send("PUBLISH a/b/c yes too");
    pub.send("PUBLISH ab no");
    CHECK(sub.received() == Frames{"s/1/temp 21", "a yes", "a/b/c yes too"});
    CHECK(broker.stats().published == 6);
    CHECK(broker.stats().delivered == 3);
}

TEST_CASE_FIXTURE(WildcardFixture, "a client whose filters overlap gets each message once") {
    sub.send("SUBSCRIBE a/#");
    sub.send("SUBSCRIBE a/+");
    sub.send("SUBSCRIBE a/b");
    sub.send("SUBSCRIBE #");
    FakeConnection& other = connect("other");
    other.send("SUBSCRIBE +/b");
    other.received();
    pub.send("PUBLISH a/b once");
    CHECK(sub.received() == Frames{"a/b once"});
    CHECK(other.received() == Frames{"a/b once"});
    CHECK(broker.stats().delivered == 2);
}

// RouteCache::find remembers the last route found (issue 16): routes that change as filters
// and topics come and go must be found anew.
TEST_CASE_FIXTURE(WildcardFixture, "a cached route published to again follows filters and topics") {
    sub.send("SUBSCRIBE a/+");
    pub.send("PUBLISH a/b 1");
    pub.send("PUBLISH a/b 2");
    FakeConnection& other = connect("other");
    other.send("SUBSCRIBE a/b");  // an exact topic: its own route entry goes
    pub.send("PUBLISH a/b 3");
    other.send("UNSUBSCRIBE a/b");
    pub.send("PUBLISH a/b 4");
    sub.send("UNSUBSCRIBE a/+");  // the last filter: every route goes
    other.send("SUBSCRIBE a/#");
    pub.send("PUBLISH a/b 5");
    pub.send("PUBLISH a/c 6");
    pub.send("PUBLISH a/b 7");
    CHECK(sub.received() == Frames{"a/b 1", "a/b 2", "a/b 3", "a/b 4"});
    CHECK(other.received() == Frames{"OK: Conn accepted", "a/b 3", "a/b 5", "a/c 6", "a/b 7"});
}

TEST_CASE_FIXTURE(WildcardFixture,
                  "a wildcard in a PUBLISH topic is refused; the connection stays") {
    for (const char* topic : {"a/+", "#", "+", "a/#", "+/b"}) {
        CAPTURE(topic);
        CHECK(pub.send(std::string{"PUBLISH "} + topic + " x").next ==
              FrameResult::Next::read_more);
        CHECK(pub.received() == Frames{"ERROR: Wildcards are not allowed in a PUBLISH topic"});
    }
    // Also when the filter has subscribers, so that the topic is known.
    sub.send("SUBSCRIBE a/+");
    pub.send("PUBLISH a/+ x");
    CHECK(pub.received() == Frames{"ERROR: Wildcards are not allowed in a PUBLISH topic"});
    CHECK(sub.received().empty());
    CHECK(broker.stats().published == 0);
    CHECK(broker.stats().topics_refused == 6);
    pub.send("PUBLISH a/b fine");
    CHECK(sub.received() == Frames{"a/b fine"});
}

TEST_CASE_FIXTURE(WildcardFixture,
                  "`+` or `#` inside a level is literal, as for original clients") {
    sub.send("SUBSCRIBE a+b");
    sub.send("SUBSCRIBE x#/y+");
    pub.send("PUBLISH a+b one");
    pub.send("PUBLISH a/b no");
    pub.send("PUBLISH x#/y+ two");
    pub.send("PUBLISH x/y no");
    CHECK(pub.received().empty());
    CHECK(sub.received() == Frames{"a+b one", "x#/y+ two"});
    CHECK_FALSE(broker.find_topic("a+b")->is_filter);
}

TEST_CASE_FIXTURE(WildcardFixture,
                  "`#` before the last level is refused on SUBSCRIBE and UNSUBSCRIBE") {
    const std::string error =
        "ERROR: Wildcard '#' is allowed only as the last level of a "
        "SUBSCRIBE topic";
    sub.send("SUBSCRIBE a/#/b");
    sub.send("SUBSCRIBE #/");
    sub.send("UNSUBSCRIBE a/#/b");
    CHECK(sub.received() == Frames{error, error, error});
    CHECK(sub.client()->subscriptions().empty());
    CHECK(broker.topic_count() == 0);
}

TEST_CASE("the levels of a wildcard filter are limited; exact topics are not") {
    Logger logger{LogLevel::quiet, std::tmpfile()};
    BrokerConfig config = test_config();
    config.max_topic_levels = 3;
    Broker broker{config, logger};
    FakeConnection c{broker};
    c.send("CONNECT c");
    c.received();
    c.send("SUBSCRIBE a/b/+/d");
    c.send("SUBSCRIBE a/b/c/#");
    CHECK(c.received() == Frames{"ERROR: Too many levels in a wildcard filter (the limit is 3)",
                                 "ERROR: Too many levels in a wildcard filter (the limit is 3)"});
    c.send("SUBSCRIBE a/b/+");
    c.send("SUBSCRIBE a/b/c/d/e/f");
    CHECK(c.received().empty());
    CHECK(c.client()->subscriptions().size() == 2);
    // 0 means the tree's own ceiling, which bounds its recursion.
    config.max_topic_levels = 0;
    config.max_topic_length = 0;
    Broker ceiling{config, logger};
    FakeConnection u{ceiling};
    u.send("CONNECT u");
    u.received();
    std::string deep = "+";
    for (std::size_t level = 1; level < FilterTree::kMaxLevels; ++level) {
        deep += "/+";
    }
    u.send("SUBSCRIBE " + deep);
    u.send("SUBSCRIBE " + deep + "/#");
    CHECK(u.received() ==
          Frames{"ERROR: Too many levels in a wildcard filter (the limit is 1024)"});
    CHECK(u.client()->subscriptions().size() == 1);
}

TEST_CASE_FIXTURE(WildcardFixture,
                  "clients cannot publish under $SYS; the broker can, and `#` does not get it") {
    sub.send("SUBSCRIBE #");
    sub.send("SUBSCRIBE $SYS/broker/uptime");
    const std::string error =
        "ERROR: Topics under $SYS/ are the broker's own; clients cannot PUBLISH to them";
    pub.send("PUBLISH $SYS/broker/uptime 0 seconds");
    pub.send("PUBLISH $SYS x");
    CHECK(pub.received() == Frames{error, error});
    CHECK(sub.received().empty());
    sub.send("SUBSCRIBE $SYSTEM/x");
    pub.send("PUBLISH $SYSTEM/x allowed");  // another first level: only `#` skips it
    CHECK(pub.received().empty());
    CHECK(sub.received() == Frames{"$SYSTEM/x allowed"});
    broker.publish_system("$SYS/broker/uptime", "5 seconds", t0);
    CHECK(sub.received() == Frames{"$SYS/broker/uptime 5 seconds"});
    sub.send("UNSUBSCRIBE $SYS/broker/uptime");
    sub.send("SUBSCRIBE $SYS/#");
    broker.publish_system("$SYS/broker/uptime", "6 seconds", t0);
    CHECK(sub.received() == Frames{"$SYS/broker/uptime 6 seconds"});
    // The broker's own publish does not vouch for the topic (filters cache what they match).
    pub.send("PUBLISH $SYS/broker/uptime 7 seconds");
    CHECK(pub.received() == Frames{error});
    CHECK(sub.received().empty());
    CHECK(broker.stats().published == 1);  // the broker's own are not counted as received
}

TEST_CASE_FIXTURE(WildcardFixture,
                  "a lost client's filters queue messages; RESTORED lists them as given") {
    sub.send("SUBSCRIBE s/+/temp");
    sub.send("SUBSCRIBE x");
    sub.send("SUBSCRIBE a/#");
    sub.lose(t0);
    pub.send("PUBLISH s/1/temp 21");
    pub.send("PUBLISH a/b/c deep");
    pub.send("PUBLISH x exact");
    FakeConnection& back = connect("sub", t0 + 1s);
    CHECK(back.received() ==
          Frames{"RESTORED sub", "s/+/temp x a/#", "s/1/temp 21", "a/b/c deep", "x exact"});
}

TEST_CASE_FIXTURE(WildcardFixture, "UNSUBSCRIBE removes the filter given, exactly as written") {
    sub.send("SUBSCRIBE a/+");
    sub.send("UNSUBSCRIBE a/b");
    pub.send("PUBLISH a/b still");
    CHECK(sub.received() == Frames{"a/b still"});
    sub.send("UNSUBSCRIBE a/+");
    pub.send("PUBLISH a/b gone");
    CHECK(sub.received().empty());
    CHECK(broker.topic_count() == 0);
}

TEST_CASE_FIXTURE(WildcardFixture, "filters of expired clients leave the tree") {
    for (int i = 0; i < 50; ++i) {
        FakeConnection& c = connect("c" + std::to_string(i));
        c.send("SUBSCRIBE s/+/temp");
        c.send("SUBSCRIBE c/" + std::to_string(i) + "/#");
        c.lose(t0);
    }
    pub.send("PUBLISH s/1/temp 21");
    CHECK(broker.check_consistency() == "");
    fire_expiry(broker, t0 + 11s);
    CHECK(broker.client_count() == 2);
    CHECK(broker.topic_count() == 0);
    CHECK(broker.check_consistency() == "");
}

TEST_CASE_FIXTURE(WildcardFixture, "a topic published again reaches filters added since") {
    sub.send("SUBSCRIBE a/+");
    pub.send("PUBLISH a/b one");
    pub.send("PUBLISH a/b two");  // from the cache
    FakeConnection& late = connect("late");
    late.received();
    late.send("SUBSCRIBE +/b");
    pub.send("PUBLISH a/b three");
    CHECK(sub.received() == Frames{"a/b one", "a/b two", "a/b three"});
    CHECK(late.received() == Frames{"a/b three"});
    sub.send("UNSUBSCRIBE a/+");
    pub.send("PUBLISH a/b four");
    CHECK(sub.received().empty());
    CHECK(late.received() == Frames{"a/b four"});
}

TEST_CASE_FIXTURE(WildcardFixture,
                  "topics that read as the broker's replies cannot be published to") {
    // `#` receives every topic, so a message on `ERROR:` would end a careful client.
    sub.send("SUBSCRIBE #");
    sub.send("SUBSCRIBE ERROR:");
    const std::string error =
        "ERROR: Topics ERROR:, OK: and RESTORED are reserved: their "
        "messages would read as the broker's replies";
    for (const char* topic : {"ERROR:", "OK:", "RESTORED"}) {
        CAPTURE(topic);
        pub.send(std::string{"PUBLISH "} + topic + " you have been disconnected");
        CHECK(pub.received() == Frames{error});
    }
    pub.send("PUBLISH ERROR:x fine");
    pub.send("PUBLISH RESTORED/x fine");
    CHECK(pub.received().empty());
    CHECK(sub.received() == Frames{"ERROR:x fine", "RESTORED/x fine"});
    CHECK(broker.stats().published == 2);
}
