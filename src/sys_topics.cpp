#include "pubsubx/sys_topics.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <utility>

#include "pubsubx/version.hpp"

namespace pubsubx {

namespace {

void add(std::vector<SysMessage>& out, std::string_view name, std::string value) {
    out.push_back({std::string{kSysPrefix}.append(name), std::move(value)});
}

void add(std::vector<SysMessage>& out, std::string_view name, std::uint64_t value) {
    add(out, name, std::to_string(value));
}

// Counters only grow, and a rate over no time is none: "0.00" rather than a division by zero.
void add_rate(std::vector<SysMessage>& out, std::string_view name, std::uint64_t before,
              std::uint64_t after, double seconds) {
    const double per_second =
        seconds > 0 && after > before ? static_cast<double>(after - before) / seconds : 0.0;
    char text[32];
    std::snprintf(text, sizeof text, "%.2f", per_second);
    add(out, name, text);
}

void add_broker(std::vector<SysMessage>& out, Clock::duration uptime) {
    add(out, "version", std::string{"pubsubx version "} + kVersion);
    const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(uptime).count();
    add(out, "uptime", std::to_string(seconds) + " seconds");
}

void add_clients(std::vector<SysMessage>& out, const SysSnapshot& now, std::size_t most_connected) {
    const BrokerStats& stats = now.broker;
    add(out, "clients/connected", now.clients - now.lost_clients);
    add(out, "clients/disconnected", now.lost_clients);
    add(out, "clients/total", now.clients);
    add(out, "clients/maximum", most_connected);
    add(out, "clients/expired", stats.clients_expired);
    add(out, "clients/lost", stats.clients_lost);
    add(out, "clients/restored", stats.clients_restored);
    add(out, "clients/recovered", stats.clients_recovered);
    add(out, "clients/evicted", stats.lost_clients_evicted);
    add(out, "clients/taken_over", stats.sessions_taken_over);
    add(out, "clients/cut/slow_consumer", stats.slow_consumers_cut);
    add(out, "clients/cut/control_backlog", stats.control_backlog_cut);
}

// A drop is for one of two reasons: the receiving client's own bound (--max-queue), or the
// bound on all clients together (--max-total-queue), which the core counts apart.
void add_messages(std::vector<SysMessage>& out, const SysSnapshot& now) {
    const BrokerStats& stats = now.broker;
    add(out, "messages/received", stats.published);
    add(out, "messages/sent", stats.delivered);
    add(out, "publish/messages/dropped", stats.dropped);
    add(out, "publish/messages/dropped/max_queue", stats.dropped - stats.dropped_global_cap);
    add(out, "publish/messages/dropped/max_total_queue", stats.dropped_global_cap);
    add(out, "store/messages/bytes", now.queued_bytes);
    add(out, "bytes/received", now.server.bytes_received);
    add(out, "bytes/sent", now.server.bytes_sent);
    add(out, "topics/count", now.topics);
    add(out, "topics/refused", stats.topics_refused);
    add(out, "subscriptions/count", now.subscriptions);
    add(out, "subscriptions/filters", now.filters);
}

void add_load(std::vector<SysMessage>& out, const SysSnapshot& before, const SysSnapshot& now,
              double seconds) {
    add_rate(out, "load/messages/received/per_second", before.broker.published,
             now.broker.published, seconds);
    add_rate(out, "load/messages/sent/per_second", before.broker.delivered, now.broker.delivered,
             seconds);
    add_rate(out, "load/publish/dropped/per_second", before.broker.dropped, now.broker.dropped,
             seconds);
    add_rate(out, "load/bytes/received/per_second", before.server.bytes_received,
             now.server.bytes_received, seconds);
    add_rate(out, "load/bytes/sent/per_second", before.server.bytes_sent, now.server.bytes_sent,
             seconds);
}

void add_connections(std::vector<SysMessage>& out, const SysSnapshot& now) {
    const server::ServerStats& server = now.server;
    add(out, "connections/open", now.connections);
    add(out, "connections/accepted", server.connections_accepted);
    add(out, "connections/refused", server.connections_refused);
    add(out, "connections/bad_connects", now.broker.bad_connects);
    add(out, "connections/connect_timeouts", server.connect_timeouts);
    add(out, "connections/write_timeouts", server.write_timeouts);
    add(out, "connections/frames_too_long", server.frames_too_long);
    add(out, "connections/frames_unsent_at_close", server.frames_unsent_at_close);
    add(out, "auth/failures", now.broker.auth_failures);
    add(out, "auth/throttled", now.broker.auth_throttled);
    add(out, "auth/not_allowed", now.broker.not_allowed);
    add(out, "auth/subscriptions_revoked", now.broker.subscriptions_revoked);
    add(out, "log/lines_dropped", now.log_lines_dropped);
}

// The durable store (--data-dir), under durable/: store/ already names the queues in memory,
// as in Mosquitto.
void add_durable(std::vector<SysMessage>& out, const SysSnapshot& before, const SysSnapshot& now,
                 double seconds) {
    const StoreFigures& store = *now.store;
    add(out, "durable/messages/written", store.messages_written);
    add(out, "durable/messages/stored", store.messages_stored);
    add(out, "durable/messages/not_durable", store.messages_not_durable);
    add(out, "durable/commits", store.commits);
    add(out, "durable/commits/failed", store.failed_commits);
    add(out, "durable/rewrites", store.rewrites);
    add(out, "durable/backlog/bytes", store.backlog_bytes);
    add_rate(out, "load/durable/messages/written/per_second",
             before.store ? before.store->messages_written : 0, store.messages_written, seconds);
}

// TLS (--tls-port), under tls/.
void add_tls(std::vector<SysMessage>& out, const SysSnapshot& now) {
    const server::ServerStats& server = now.server;
    add(out, "tls/handshakes", server.tls_handshakes);
    add(out, "tls/handshakes/failed", server.tls_handshakes_failed);
    add(out, "tls/handshakes/timeouts", server.tls_handshake_timeouts);
    add(out, "tls/names_refused", server.tls_names_refused);
}

// Cluster mode (--cluster), under cluster/.
void add_cluster(std::vector<SysMessage>& out, const SysSnapshot& before, const SysSnapshot& now,
                 double seconds) {
    const ClusterFigures& cluster = *now.cluster;
    add(out, "cluster/nodes", cluster.nodes);
    add(out, "cluster/connected", cluster.connected ? 1 : 0);
    add(out, "cluster/disconnects", cluster.disconnects);
    add(out, "cluster/lease_lapses", cluster.lease_lapses);
    add(out, "cluster/subscriptions", cluster.nats_subscriptions);
    add(out, "cluster/messages/forwarded", cluster.forwarded);
    add(out, "cluster/messages/received", cluster.received);
    add(out, "cluster/messages/duplicates", cluster.duplicates);
    add(out, "cluster/messages/lost", cluster.lost);
    add(out, "cluster/messages/not_forwarded", cluster.not_forwarded);
    add(out, "cluster/messages/dropped", cluster.dropped_by_nats);
    add(out, "cluster/batches/damaged", cluster.damaged);
    add(out, "cluster/clients/handed_in", cluster.handed_in);
    add(out, "cluster/clients/handed_out", cluster.handed_out);
    add(out, "cluster/registry/refusals", cluster.registry_refusals);
    add_rate(out, "load/cluster/messages/received/per_second",
             before.cluster ? before.cluster->received : 0, cluster.received, seconds);
}

}  // namespace

std::vector<SysMessage> SysTopics::update(const SysSnapshot& snapshot, TimePoint now) {
    most_connected_ = std::max(most_connected_, snapshot.clients - snapshot.lost_clients);
    const double seconds = std::chrono::duration<double>(now - previous_at_).count();
    std::vector<SysMessage> out;
    out.reserve(48);
    add_broker(out, now - started_);
    add_clients(out, snapshot, most_connected_);
    add_messages(out, snapshot);
    add_load(out, previous_, snapshot, seconds);
    add_connections(out, snapshot);
    if (snapshot.tls) {
        add_tls(out, snapshot);
    }
    if (snapshot.store) {
        add_durable(out, previous_, snapshot, seconds);
    }
    if (snapshot.cluster) {
        add_cluster(out, previous_, snapshot, seconds);
    }
    previous_ = snapshot;
    previous_at_ = now;
    return out;
}

}  // namespace pubsubx
