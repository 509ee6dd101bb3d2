#include "http/metrics_snapshot.hpp"

#include <doctest/doctest.h>

#include <map>
#include <sstream>
#include <string>
#include <vector>

using namespace pubsubx;
using namespace pubsubx::http;
using namespace std::chrono_literals;

namespace {

// The samples of an exposition (`name{labels}` to value), with each family's HELP and TYPE
// checked: every sample follows a TYPE line of its family, given once.
struct Exposition {
    std::map<std::string, std::string> samples;
    std::map<std::string, std::string> types;
    std::map<std::string, int> helps;
};

Exposition parse(const std::string& text) {
    Exposition result;
    std::istringstream lines{text};
    std::string line;
    std::string family;
    while (std::getline(lines, line)) {
        REQUIRE_FALSE(line.empty());
        if (line.rfind("# HELP ", 0) == 0) {
            const std::string name = line.substr(7, line.find(' ', 7) - 7);
            ++result.helps[name];
            family = name;
        } else if (line.rfind("# TYPE ", 0) == 0) {
            const std::string name = line.substr(7, line.find(' ', 7) - 7);
            REQUIRE_MESSAGE(result.types.count(name) == 0, name);
            result.types[name] = line.substr(line.find(' ', 7) + 1);
            REQUIRE(name == family);
        } else {
            const auto space = line.rfind(' ');
            const std::string key = line.substr(0, space);
            const std::string name = key.substr(0, key.find('{'));
            REQUIRE_MESSAGE(name == family, line);
            REQUIRE_MESSAGE(result.samples.count(key) == 0, key);
            result.samples[key] = line.substr(space + 1);
        }
    }
    return result;
}

MetricsSnapshot sample_snapshot() {
    MetricsSnapshot snapshot;
    snapshot.version = "1.2.3";
    snapshot.start_time_seconds = 1700000000.5;
    snapshot.uptime_seconds = 42.25;
    SysSnapshot& figures = snapshot.figures;
    figures.broker.published = 10;
    figures.broker.delivered = 20;
    figures.broker.dropped = 7;
    figures.broker.dropped_global_cap = 2;
    figures.broker.clients_lost = 3;
    figures.server.frames_unsent_at_close = 4;
    figures.server.connections_accepted = 9;
    figures.server.bytes_received = 1000;
    figures.server.bytes_sent = 2000;
    figures.clients = 5;  // connected and lost
    figures.lost_clients = 2;
    figures.topics = 6;
    figures.subscriptions = 8;
    figures.queued_bytes = 123;
    figures.connections = 4;
    figures.log_lines_dropped = 1;
    return snapshot;
}

}  // namespace

TEST_CASE("/metrics: every family has HELP and TYPE, names follow the conventions") {
    const Exposition out = parse(render_prometheus(sample_snapshot()));
    CHECK(out.samples.at("pubsubx_build_info{version=\"1.2.3\"}") == "1");
    CHECK(out.samples.at("pubsubx_start_time_seconds") == "1700000000.5");
    CHECK(out.samples.at("pubsubx_uptime_seconds") == "42.25");
    CHECK(out.samples.at("pubsubx_connections") == "4");
    CHECK(out.samples.at("pubsubx_clients") == "3");  // connected: 5 clients, 2 of them lost
    CHECK(out.samples.at("pubsubx_lost_clients") == "2");
    CHECK(out.samples.at("pubsubx_topics") == "6");
    CHECK(out.samples.at("pubsubx_subscriptions") == "8");
    CHECK(out.samples.at("pubsubx_queued_bytes") == "123");
    CHECK(out.samples.at("pubsubx_messages_published_total") == "10");
    CHECK(out.samples.at("pubsubx_messages_delivered_total") == "20");
    CHECK(out.samples.at("pubsubx_received_bytes_total") == "1000");
    CHECK(out.samples.at("pubsubx_sent_bytes_total") == "2000");
    CHECK(out.samples.at("pubsubx_clients_lost_total") == "3");
    CHECK(out.samples.at("pubsubx_connections_accepted_total") == "9");
    CHECK(out.samples.at("pubsubx_log_lines_dropped_total") == "1");
    // Drops by reason: the global cap's are not counted twice.
    CHECK(out.samples.at("pubsubx_messages_dropped_total{reason=\"queue_full\"}") == "5");
    CHECK(out.samples.at("pubsubx_messages_dropped_total{reason=\"total_queue_full\"}") == "2");
    CHECK(out.samples.at("pubsubx_messages_dropped_total{reason=\"connection_closed\"}") == "4");
    for (const auto& [name, type] : out.types) {
        CAPTURE(name);
        CHECK(name.rfind("pubsubx_", 0) == 0);
        CHECK(out.helps.at(name) == 1);
        CHECK((type == "counter" || type == "gauge"));
        // Counters end in _total; nothing else does.
        CHECK((type == "counter") == (name.size() > 6 && name.ends_with("_total")));
    }
    // Without --tls-port, --data-dir or --cluster, none of their figures.
    for (const auto& [name, type] : out.types) {
        CAPTURE(name);
        CHECK(name.find("_tls_") == std::string::npos);
        CHECK(name.find("_store_") == std::string::npos);
        CHECK(name.find("_cluster_") == std::string::npos);
    }
}

TEST_CASE("/metrics: store, cluster and TLS figures only when they exist") {
    MetricsSnapshot snapshot = sample_snapshot();
    snapshot.figures.tls = true;
    snapshot.figures.server.tls_handshakes = 11;
    snapshot.figures.store = StoreFigures{};
    snapshot.figures.store->messages_written = 12;
    snapshot.figures.store->messages_stored = 13;
    snapshot.figures.store->backlog_bytes = 14;
    snapshot.figures.cluster = ClusterFigures{};
    snapshot.figures.cluster->forwarded = 15;
    snapshot.figures.cluster->nodes = 3;
    snapshot.figures.cluster->connected = true;
    const Exposition out = parse(render_prometheus(snapshot));
    CHECK(out.samples.at("pubsubx_tls_handshakes_total") == "11");
    CHECK(out.samples.at("pubsubx_store_messages_written_total") == "12");
    CHECK(out.samples.at("pubsubx_store_messages") == "13");
    CHECK(out.types.at("pubsubx_store_messages") == "gauge");
    CHECK(out.samples.at("pubsubx_store_backlog_bytes") == "14");
    CHECK(out.samples.at("pubsubx_cluster_messages_forwarded_total") == "15");
    CHECK(out.samples.at("pubsubx_cluster_nodes") == "3");
    CHECK(out.samples.at("pubsubx_cluster_connected") == "1");
}

TEST_CASE("/metrics: a label value is escaped") {
    MetricsSnapshot snapshot = sample_snapshot();
    snapshot.version = "a\"b\\c\nd";
    const std::string text = render_prometheus(snapshot);
    CHECK(text.find("pubsubx_build_info{version=\"a\\\"b\\\\c\\nd\"} 1\n") != std::string::npos);
}

TEST_CASE("RateHistory: per-second rates between snapshots, the oldest forgotten") {
    RateHistory history{3};
    SysSnapshot figures;
    history.add(figures, 1.0);
    CHECK(history.points().empty());  // no interval yet
    figures.broker.published = 100;
    figures.broker.delivered = 200;
    figures.server.bytes_received = 5000;
    figures.server.bytes_sent = 9000;
    history.add(figures, 3.0);  // two seconds later
    std::vector<RatePoint> points = history.points();
    REQUIRE(points.size() == 1);
    CHECK(points[0].uptime_seconds == 3.0);
    CHECK(points[0].messages_in == 50.0);
    CHECK(points[0].messages_out == 100.0);
    CHECK(points[0].bytes_in == 2500.0);
    CHECK(points[0].bytes_out == 4500.0);
    for (int second = 4; second <= 7; ++second) {
        history.add(figures, second);
    }
    points = history.points();
    REQUIRE(points.size() == 3);
    CHECK(points.front().uptime_seconds == 5.0);
    CHECK(points.back().uptime_seconds == 7.0);
    CHECK(points.back().messages_in == 0.0);
}

TEST_CASE("/status.json: the figures and the rate history") {
    MetricsSnapshot snapshot = sample_snapshot();
    snapshot.rates = {{41.0, 1.5, 3, 100, 200}, {42.0, 2, 4, 150, 250}};
    const std::string json = render_status_json(snapshot);
    CHECK(json.front() == '{');
    CHECK(json.back() == '}');
    CHECK(json.find("\"version\":\"1.2.3\"") != std::string::npos);
    CHECK(json.find("\"connections\":4,") != std::string::npos);
    CHECK(json.find("\"clients\":3,") != std::string::npos);
    CHECK(json.find("\"lost_clients\":2,") != std::string::npos);
    CHECK(json.find("\"messages_in\":10,") != std::string::npos);
    CHECK(json.find("\"messages_out\":20,") != std::string::npos);
    CHECK(json.find("\"dropped\":11,") != std::string::npos);  // 7 + 4 unsent at close
    CHECK(json.find("\"messages_in_per_second\":2,") != std::string::npos);  // the last point
    CHECK(json.find("\"rates\":[[41,1.5,3,100,200],[42,2,4,150,250]]") != std::string::npos);
    snapshot.version = "x\"\n";
    CHECK(render_status_json(snapshot).find("\"version\":\"x\\\"\\u000a\"") != std::string::npos);
}

TEST_CASE("/healthz: healthy while the event loop publishes") {
    const auto now = std::chrono::steady_clock::now();
    CHECK_FALSE(check_health(nullptr, now, 5s).ok);
    MetricsSnapshot snapshot;
    snapshot.taken_at = now - 2s;
    const Health fresh = check_health(&snapshot, now, 5s);
    CHECK(fresh.ok);
    CHECK(fresh.text == "ok");
    snapshot.taken_at = now - 8s;
    const Health stale = check_health(&snapshot, now, 5s);
    CHECK_FALSE(stale.ok);
    CHECK(stale.text.find("8 s") != std::string::npos);
}
