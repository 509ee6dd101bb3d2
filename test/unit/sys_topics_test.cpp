#include "pubsubx/sys_topics.hpp"

#include <doctest/doctest.h>

#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "pubsubx/broker.hpp"
#include "pubsubx/version.hpp"

using namespace pubsubx;
using namespace std::chrono_literals;

namespace {

using Values = std::map<std::string, std::string>;

// The topics without kSysPrefix, to their values; a topic given twice fails the test.
Values by_name(const std::vector<SysMessage>& messages) {
    Values values;
    for (const SysMessage& message : messages) {
        REQUIRE(message.topic.starts_with(kSysPrefix));
        const bool first =
            values.emplace(message.topic.substr(kSysPrefix.size()), message.value).second;
        CHECK_MESSAGE(first, message.topic, " is given twice");
    }
    return values;
}

// Compares topic by topic, so that a failure names the topic.
void check_values(const Values& values, const Values& expected) {
    for (const auto& [name, value] : expected) {
        const auto found = values.find(name);
        CHECK_MESSAGE((found == values.end() ? "(missing)" : found->second) == value, name);
    }
    for (const auto& [name, value] : values) {
        CHECK_MESSAGE(expected.count(name) == 1, "unexpected topic ", name);
    }
}

// Every counter different, so that a topic that reads the wrong one shows.
SysSnapshot distinct_counters() {
    SysSnapshot snapshot;
    BrokerStats& broker = snapshot.broker;
    broker.published = 101;
    broker.delivered = 102;
    broker.dropped = 103;
    broker.dropped_global_cap = 3;
    broker.clients_lost = 105;
    broker.clients_restored = 106;
    broker.clients_expired = 107;
    broker.lost_clients_evicted = 108;
    broker.slow_consumers_cut = 109;
    broker.control_backlog_cut = 110;
    broker.sessions_taken_over = 111;
    broker.auth_failures = 112;
    broker.auth_throttled = 113;
    broker.topics_refused = 114;
    broker.bad_connects = 115;
    broker.clients_recovered = 116;
    broker.not_allowed = 117;
    broker.subscriptions_revoked = 118;
    server::ServerStats& server = snapshot.server;
    server.connections_accepted = 201;
    server.connections_refused = 202;
    server.connect_timeouts = 203;
    server.write_timeouts = 204;
    server.frames_too_long = 205;
    server.frames_unsent_at_close = 206;
    server.bytes_received = 207;
    server.bytes_sent = 208;
    snapshot.clients = 30;
    snapshot.lost_clients = 4;
    snapshot.topics = 31;
    snapshot.subscriptions = 32;
    snapshot.filters = 36;
    snapshot.queued_bytes = 33;
    snapshot.connections = 34;
    snapshot.log_lines_dropped = 35;
    return snapshot;
}

// Stands in for a session: the core needs only the base class.
class TestConnection final : public Connection {};

}  // namespace

TEST_CASE("every topic reads its own counter, the shutdown line's included") {
    const TimePoint start{};
    SysTopics sys{start};
    const Values values = by_name(sys.update(distinct_counters(), start + 10s));
    const Values expected{
        {"version", std::string{"pubsubx version "} + kVersion},
        {"uptime", "10 seconds"},
        {"clients/connected", "26"},
        {"clients/disconnected", "4"},
        {"clients/total", "30"},
        {"clients/maximum", "26"},
        {"clients/expired", "107"},
        {"clients/lost", "105"},
        {"clients/restored", "106"},
        {"clients/recovered", "116"},
        {"clients/evicted", "108"},
        {"clients/taken_over", "111"},
        {"clients/cut/slow_consumer", "109"},
        {"clients/cut/control_backlog", "110"},
        {"messages/received", "101"},
        {"messages/sent", "102"},
        {"publish/messages/dropped", "103"},
        {"publish/messages/dropped/max_queue", "100"},
        {"publish/messages/dropped/max_total_queue", "3"},
        {"store/messages/bytes", "33"},
        {"bytes/received", "207"},
        {"bytes/sent", "208"},
        {"topics/count", "31"},
        {"topics/refused", "114"},
        {"subscriptions/count", "32"},
        {"subscriptions/filters", "36"},
        {"load/messages/received/per_second", "10.10"},
        {"load/messages/sent/per_second", "10.20"},
        {"load/publish/dropped/per_second", "10.30"},
        {"load/bytes/received/per_second", "20.70"},
        {"load/bytes/sent/per_second", "20.80"},
        {"connections/open", "34"},
        {"connections/accepted", "201"},
        {"connections/refused", "202"},
        {"connections/bad_connects", "115"},
        {"connections/connect_timeouts", "203"},
        {"connections/write_timeouts", "204"},
        {"connections/frames_too_long", "205"},
        {"connections/frames_unsent_at_close", "206"},
        {"auth/failures", "112"},
        {"auth/throttled", "113"},
        {"auth/not_allowed", "117"},
        {"auth/subscriptions_revoked", "118"},
        {"log/lines_dropped", "35"},
    };
    check_values(values, expected);
}

TEST_CASE("with a durable store its figures join, each under durable/") {
    const TimePoint start{};
    SysTopics sys{start};
    SysSnapshot snapshot = distinct_counters();
    snapshot.store = StoreFigures{301, 302, 303, 304, 305, 306, 307};
    Values values = by_name(sys.update(snapshot, start + 10s));
    CHECK(values["durable/messages/written"] == "301");
    CHECK(values["durable/messages/stored"] == "302");
    CHECK(values["durable/messages/not_durable"] == "303");
    CHECK(values["durable/commits"] == "304");
    CHECK(values["durable/commits/failed"] == "305");
    CHECK(values["durable/rewrites"] == "306");
    CHECK(values["durable/backlog/bytes"] == "307");
    CHECK(values["load/durable/messages/written/per_second"] == "30.10");
    snapshot.store->messages_written = 401;
    values = by_name(sys.update(snapshot, start + 20s));
    CHECK(values["load/durable/messages/written/per_second"] == "10.00");
    CHECK(values.size() == 44 + 8);
}

TEST_CASE("with TLS its counters join, each under tls/; without it there are none") {
    const TimePoint start{};
    SysTopics sys{start};
    SysSnapshot snapshot = distinct_counters();
    snapshot.server.tls_handshakes = 401;
    snapshot.server.tls_handshakes_failed = 402;
    snapshot.server.tls_handshake_timeouts = 403;
    snapshot.server.tls_names_refused = 404;
    CHECK(by_name(sys.update(snapshot, start + 10s)).count("tls/handshakes") == 0);
    snapshot.tls = true;
    Values values = by_name(sys.update(snapshot, start + 20s));
    CHECK(values["tls/handshakes"] == "401");
    CHECK(values["tls/handshakes/failed"] == "402");
    CHECK(values["tls/handshakes/timeouts"] == "403");
    CHECK(values["tls/names_refused"] == "404");
    CHECK(values.size() == 44 + 4);
}

TEST_CASE("rates are per second over the interval since the previous update") {
    const TimePoint start{};
    SysTopics sys{start};
    SysSnapshot snapshot;
    snapshot.broker.published = 10;
    snapshot.server.bytes_sent = 1000;
    Values values = by_name(sys.update(snapshot, start + 2s));
    CHECK(values["load/messages/received/per_second"] == "5.00");
    CHECK(values["load/bytes/sent/per_second"] == "500.00");
    CHECK(values["uptime"] == "2 seconds");

    snapshot.broker.published = 20;
    values = by_name(sys.update(snapshot, start + 2500ms));
    CHECK(values["load/messages/received/per_second"] == "20.00");  // 10 in half a second
    CHECK(values["load/bytes/sent/per_second"] == "0.00");
    CHECK(values["messages/received"] == "20");
    CHECK(values["uptime"] == "2 seconds");  // whole seconds, as Mosquitto's

    values = by_name(sys.update(snapshot, start + 2500ms));
    CHECK(values["load/messages/received/per_second"] == "0.00");  // no time, no division
}

TEST_CASE("clients/maximum is the most clients connected at any update") {
    const TimePoint start{};
    SysTopics sys{start};
    SysSnapshot snapshot;
    snapshot.clients = 7;
    snapshot.lost_clients = 2;
    CHECK(by_name(sys.update(snapshot, start + 1s))["clients/maximum"] == "5");
    snapshot.lost_clients = 6;
    Values values = by_name(sys.update(snapshot, start + 2s));
    CHECK(values["clients/maximum"] == "5");
    CHECK(values["clients/connected"] == "1");
    CHECK(values["clients/disconnected"] == "6");
}

TEST_CASE("Broker::subscription_count counts the subscriptions of connected and lost clients") {
    Logger logger{LogLevel::quiet, std::tmpfile()};
    Broker broker{BrokerConfig{}, logger};
    const TimePoint now{};
    TestConnection alice, bob;
    broker.handle_frame(alice, "CONNECT alice", now);
    broker.handle_frame(bob, "CONNECT bob", now);
    for (const char* topic : {"a", "b", "c"}) {
        broker.handle_frame(alice, std::string{"SUBSCRIBE "} + topic, now);
    }
    broker.handle_frame(bob, "SUBSCRIBE a", now);
    broker.handle_frame(bob, "SUBSCRIBE a", now);  // already subscribed: not counted again
    CHECK(broker.subscription_count() == 4);
    CHECK(broker.topic_count() == 3);
    broker.connection_closed(alice, now);  // lost: keeps its subscriptions
    CHECK(broker.subscription_count() == 4);
    broker.handle_frame(bob, "UNSUBSCRIBE a", now);
    CHECK(broker.subscription_count() == 3);
}

// A subscriber that reads nothing but $SYS topics can only become a slow consumer in
// publish_system. It must be cut off then, as after a frame: left listed until some client's
// next frame, it could be lost and removed meanwhile, and the list would point at nothing.
TEST_CASE("Broker::publish_system cuts off a subscriber it made a slow consumer") {
    Logger logger{LogLevel::quiet, std::tmpfile()};
    BrokerConfig config;
    config.max_queue_bytes = 1024;
    config.slow_consumer_grace = 1s;
    Broker broker{config, logger};
    const TimePoint start{};
    TestConnection reader;
    broker.handle_frame(reader, "CONNECT reader", start);
    broker.handle_frame(reader, "SUBSCRIBE $SYS/broker/uptime", start);
    const std::string value(100, 'x');
    for (int i = 0; i < 20; ++i) {
        broker.publish_system("$SYS/broker/uptime", value, start);  // overflows: drops begin
    }
    REQUIRE(broker.stats().dropped > 0);
    broker.publish_system("$SYS/broker/uptime", value, start + 2s);  // past the grace
    CHECK(broker.find_client("reader")->state() == ClientState::lost);
    CHECK(broker.stats().slow_consumers_cut == 1);
    Effects effects;
    broker.take_effects(effects);
    REQUIRE(effects.close.size() == 1);
    CHECK(effects.close.front().connection == &reader);
}

// The sequence that read a destroyed client before publish_system cut off at once (found
// with AddressSanitizer, which the sanitizer build runs this under).
TEST_CASE("a slow $SYS subscriber removed before the next frame is never touched again") {
    Logger logger{LogLevel::quiet, std::tmpfile()};
    BrokerConfig config;
    config.max_queue_bytes = 1024;
    config.slow_consumer_grace = 1s;
    config.lost_timeout = Clock::duration::zero();  // a lost client is removed at once
    Broker broker{config, logger};
    const TimePoint start{};
    TestConnection reader, other;
    broker.handle_frame(reader, "CONNECT reader", start);
    broker.handle_frame(other, "CONNECT other", start);
    broker.handle_frame(reader, "SUBSCRIBE $SYS/broker/uptime", start);
    const std::string value(100, 'x');
    for (int i = 0; i < 20; ++i) {
        broker.publish_system("$SYS/broker/uptime", value, start);
    }
    broker.publish_system("$SYS/broker/uptime", value, start + 2s);
    broker.connection_closed(reader, start + 2s);
    CHECK(broker.find_client("reader") == nullptr);
    broker.handle_frame(other, "PUBLISH t after", start + 2s);
    CHECK(broker.check_consistency().empty());
}
