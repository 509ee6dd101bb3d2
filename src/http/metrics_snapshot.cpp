#include "metrics_snapshot.hpp"

#include <charconv>
#include <cmath>
#include <string_view>

namespace pubsubx::http {

namespace {

std::string number_text(double value) {
    if (std::isnan(value)) {
        return "NaN";
    }
    if (std::isinf(value)) {
        return value > 0 ? "+Inf" : "-Inf";
    }
    char buffer[64];
    const auto result = std::to_chars(buffer, buffer + sizeof buffer, value);
    return {buffer, result.ptr};
}

// A label value: backslash, double quote and line feed escaped (the text format's rule).
std::string label_value(std::string_view text) {
    std::string out;
    for (const char c : text) {
        if (c == '\\' || c == '"') {
            out += '\\';
            out += c;
        } else if (c == '\n') {
            out += "\\n";
        } else {
            out += c;
        }
    }
    return out;
}

// The text format, one family at a time: HELP and TYPE, then its samples.
class Exposition {
  public:
    void family(std::string_view name, std::string_view type, std::string_view help) {
        out_ += "# HELP ";
        out_ += name;
        out_ += ' ';
        out_ += help;
        out_ += "\n# TYPE ";
        out_ += name;
        out_ += ' ';
        out_ += type;
        out_ += '\n';
    }
    void sample(std::string_view name, std::string_view labels, const std::string& value) {
        out_ += name;
        if (!labels.empty()) {
            out_ += '{';
            out_ += labels;
            out_ += '}';
        }
        out_ += ' ';
        out_ += value;
        out_ += '\n';
    }
    void counter(std::string_view name, std::string_view help, std::uint64_t value) {
        family(name, "counter", help);
        sample(name, {}, std::to_string(value));
    }
    void gauge(std::string_view name, std::string_view help, double value) {
        family(name, "gauge", help);
        sample(name, {}, number_text(value));
    }
    std::string take() { return std::move(out_); }

  private:
    std::string out_;
};

void server_metrics(Exposition& out, const server::ServerStats& stats, bool tls) {
    out.counter("pubsubx_connections_accepted_total", "Connections accepted.",
                stats.connections_accepted);
    out.counter("pubsubx_connections_refused_total",
                "Connections refused because --max-connections were open.",
                stats.connections_refused);
    out.counter("pubsubx_connect_timeouts_total",
                "Connections closed for sending no CONNECT within --connect-timeout.",
                stats.connect_timeouts);
    out.counter("pubsubx_write_timeouts_total",
                "Connections closed because a write waited longer than --write-timeout.",
                stats.write_timeouts);
    out.counter("pubsubx_frames_too_long_total",
                "Connections closed for a frame longer than --max-frame.", stats.frames_too_long);
    if (tls) {
        out.counter("pubsubx_tls_handshakes_total", "TLS handshakes completed.",
                    stats.tls_handshakes);
        out.counter("pubsubx_tls_handshake_failures_total",
                    "TLS handshakes that failed (timeouts included).", stats.tls_handshakes_failed);
        out.counter("pubsubx_tls_handshake_timeouts_total",
                    "TLS handshakes not done within --connect-timeout.",
                    stats.tls_handshake_timeouts);
        out.counter("pubsubx_tls_names_refused_total",
                    "CONNECTs refused by --tls-name-from-cert: the name is not the certificate's.",
                    stats.tls_names_refused);
    }
}

void broker_metrics(Exposition& out, const BrokerStats& stats) {
    out.counter("pubsubx_clients_lost_total",
                "Clients lost: their connection ended without DISCONNECT.", stats.clients_lost);
    out.counter("pubsubx_clients_restored_total",
                "Lost clients that reconnected and got their messages back.",
                stats.clients_restored);
    out.counter("pubsubx_clients_recovered_total",
                "Clients loaded from the durable store at start.", stats.clients_recovered);
    out.counter("pubsubx_clients_expired_total", "Lost clients forgotten after --lost-timeout.",
                stats.clients_expired);
    out.counter("pubsubx_lost_clients_evicted_total",
                "Lost clients removed early because --max-lost-clients were kept.",
                stats.lost_clients_evicted);
    out.counter("pubsubx_slow_consumers_cut_total",
                "Connected clients cut off after their queue overflowed for "
                "--slow-consumer-grace.",
                stats.slow_consumers_cut);
    out.counter("pubsubx_control_backlog_cut_total",
                "Clients cut off because they never read their error frames.",
                stats.control_backlog_cut);
    out.counter("pubsubx_sessions_taken_over_total",
                "Connected clients whose name was taken over by a CONNECT with their secret.",
                stats.sessions_taken_over);
    out.counter("pubsubx_auth_failures_total",
                "CONNECTs with a wrong or missing secret or password.", stats.auth_failures);
    out.counter("pubsubx_auth_throttled_total",
                "CONNECTs refused unchecked during an authentication back-off.",
                stats.auth_throttled);
    out.counter("pubsubx_topics_refused_total",
                "SUBSCRIBEs and PUBLISHes refused for their topic (invalid, too long, over a "
                "limit).",
                stats.topics_refused);
    out.counter("pubsubx_bad_connects_total", "First frames that were not a valid CONNECT.",
                stats.bad_connects);
    out.counter("pubsubx_not_allowed_total",
                "PUBLISHes and SUBSCRIBEs outside the client's rights (--users).",
                stats.not_allowed);
    out.counter("pubsubx_subscriptions_revoked_total",
                "Subscriptions ended because the users file no longer allows them.",
                stats.subscriptions_revoked);
}

void store_metrics(Exposition& out, const StoreFigures& store) {
    out.counter("pubsubx_store_messages_written_total",
                "Messages written to the durable store (--data-dir).", store.messages_written);
    out.gauge("pubsubx_store_messages",
              "Messages in the durable store now, queued for lost clients.",
              static_cast<double>(store.messages_stored));
    out.counter("pubsubx_store_messages_not_durable_total",
                "Messages kept in memory only because the store's writer was behind.",
                store.messages_not_durable);
    out.counter("pubsubx_store_commits_total", "Transactions committed by the store.",
                store.commits);
    out.counter("pubsubx_store_failed_commits_total", "Store transactions that failed.",
                store.failed_commits);
    out.counter("pubsubx_store_rewrites_total", "Times the store was written anew from memory.",
                store.rewrites);
    out.gauge("pubsubx_store_backlog_bytes", "Changes not yet committed to the store.",
              static_cast<double>(store.backlog_bytes));
}

void cluster_metrics(Exposition& out, const ClusterFigures& cluster) {
    out.counter("pubsubx_cluster_messages_forwarded_total",
                "Local publishes sent to the other nodes.", cluster.forwarded);
    out.counter("pubsubx_cluster_messages_received_total", "Messages received from other nodes.",
                cluster.received);
    out.counter("pubsubx_cluster_messages_duplicate_total",
                "Messages received twice from other nodes, not delivered again.",
                cluster.duplicates);
    out.counter("pubsubx_cluster_messages_lost_total",
                "Messages other nodes sent that never arrived.", cluster.lost);
    out.counter("pubsubx_cluster_messages_not_forwarded_total",
                "Local publishes NATS could not take (closed, buffer full).",
                cluster.not_forwarded);
    out.counter("pubsubx_cluster_messages_dropped_by_nats_total",
                "Messages NATS dropped because this node did not read them fast enough.",
                cluster.dropped_by_nats);
    out.counter("pubsubx_cluster_batches_damaged_total",
                "Batches from other nodes that could not be read.", cluster.damaged);
    out.counter("pubsubx_cluster_disconnects_total", "Disconnections from NATS.",
                cluster.disconnects);
    out.counter("pubsubx_cluster_lease_lapses_total", "Times this node's lease ended while it ran.",
                cluster.lease_lapses);
    out.counter("pubsubx_cluster_clients_handed_in_total",
                "Clients other nodes handed over to this one.", cluster.handed_in);
    out.counter("pubsubx_cluster_clients_handed_out_total",
                "Clients this node handed over to others.", cluster.handed_out);
    out.counter("pubsubx_cluster_registry_refusals_total",
                "CONNECTs refused because the name registry could not be asked.",
                cluster.registry_refusals);
    out.gauge("pubsubx_cluster_nodes", "Nodes in the cluster: this one and those it hears from.",
              static_cast<double>(cluster.nodes));
    out.gauge("pubsubx_cluster_nats_subscriptions", "This node's subscriptions on NATS.",
              static_cast<double>(cluster.nats_subscriptions));
    out.gauge("pubsubx_cluster_connected", "1 while this node is connected to NATS.",
              cluster.connected ? 1 : 0);
}

// JSON text for a string: quotes, backslashes and control characters escaped.
std::string json_string(std::string_view text) {
    std::string out = "\"";
    for (const char c : text) {
        const auto byte = static_cast<unsigned char>(c);
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (byte < 0x20) {
            static constexpr char kHex[] = "0123456789abcdef";
            out += "\\u00";
            out += kHex[byte >> 4];
            out += kHex[byte & 0xf];
        } else {
            out += c;
        }
    }
    return out + "\"";
}

// JSON has no NaN or infinity.
std::string json_number(double value) {
    return std::isfinite(value) ? number_text(value) : "0";
}

class JsonObject {
  public:
    JsonObject& field(std::string_view name, const std::string& json) {
        out_ += out_.size() > 1 ? "," : "";
        out_ += json_string(name);
        out_ += ':';
        out_ += json;
        return *this;
    }
    JsonObject& number(std::string_view name, double value) {
        return field(name, json_number(value));
    }
    JsonObject& count(std::string_view name, std::uint64_t value) {
        return field(name, std::to_string(value));
    }
    std::string close() { return out_ + "}"; }

  private:
    std::string out_ = "{";
};

}  // namespace

void RateHistory::add(const SysSnapshot& figures, double uptime_seconds) {
    const double interval = uptime_seconds - previous_uptime_;
    if (have_previous_ && interval > 0) {
        // Counters only grow; a difference is taken as unsigned, then scaled.
        const auto per_second = [interval](std::uint64_t now, std::uint64_t before) {
            return now >= before ? static_cast<double>(now - before) / interval : 0.0;
        };
        points_.push_back(RatePoint{
            uptime_seconds,
            per_second(figures.broker.published, previous_.broker.published),
            per_second(figures.broker.delivered, previous_.broker.delivered),
            per_second(figures.server.bytes_received, previous_.server.bytes_received),
            per_second(figures.server.bytes_sent, previous_.server.bytes_sent),
        });
        while (points_.size() > capacity_) {
            points_.pop_front();
        }
    }
    have_previous_ = true;
    previous_uptime_ = uptime_seconds;
    previous_ = figures;
}

std::string render_prometheus(const MetricsSnapshot& snapshot) {
    const SysSnapshot& figures = snapshot.figures;
    Exposition out;
    out.family("pubsubx_build_info", "gauge", "The broker's version, as a label; always 1.");
    out.sample("pubsubx_build_info", "version=\"" + label_value(snapshot.version) + "\"", "1");
    out.gauge("pubsubx_start_time_seconds",
              "When the broker started, in seconds since the Unix epoch.",
              snapshot.start_time_seconds);
    out.gauge("pubsubx_uptime_seconds", "Seconds since the broker started.",
              snapshot.uptime_seconds);

    out.gauge("pubsubx_connections", "Open client connections, with or without a client.",
              static_cast<double>(figures.connections));
    const std::size_t connected =
        figures.clients >= figures.lost_clients ? figures.clients - figures.lost_clients : 0;
    out.gauge("pubsubx_clients", "Connected clients.", static_cast<double>(connected));
    out.gauge("pubsubx_lost_clients",
              "Lost clients whose subscriptions and messages are kept until they reconnect.",
              static_cast<double>(figures.lost_clients));
    out.gauge("pubsubx_topics", "Topics and wildcard filters with at least one subscriber.",
              static_cast<double>(figures.topics));
    out.gauge("pubsubx_subscriptions",
              "Subscriptions (topics and filters) of connected and lost clients.",
              static_cast<double>(figures.subscriptions));
    out.gauge("pubsubx_wildcard_filters", "Wildcard filters with at least one subscriber.",
              static_cast<double>(figures.filters));
    out.gauge("pubsubx_queued_bytes",
              "Bytes queued or in flight for all clients together (--max-total-queue).",
              static_cast<double>(figures.queued_bytes));

    out.counter("pubsubx_messages_published_total", "Messages published by clients (in).",
                figures.broker.published);
    out.counter("pubsubx_messages_delivered_total", "Messages put into subscribers' queues (out).",
                figures.broker.delivered);
    out.counter("pubsubx_received_bytes_total", "Bytes read from client connections.",
                figures.server.bytes_received);
    out.counter("pubsubx_sent_bytes_total", "Bytes written to client connections.",
                figures.server.bytes_sent);

    out.family("pubsubx_messages_dropped_total", "counter",
               "Messages dropped from a client's queue, by reason: queue_full (its --max-queue "
               "overflowed), total_queue_full (--max-total-queue was reached), "
               "connection_closed (frames unsent when its connection closed).");
    const std::uint64_t global = figures.broker.dropped_global_cap;
    const std::uint64_t own =
        figures.broker.dropped >= global ? figures.broker.dropped - global : 0;
    out.sample("pubsubx_messages_dropped_total", "reason=\"queue_full\"", std::to_string(own));
    out.sample("pubsubx_messages_dropped_total", "reason=\"total_queue_full\"",
               std::to_string(global));
    out.sample("pubsubx_messages_dropped_total", "reason=\"connection_closed\"",
               std::to_string(figures.server.frames_unsent_at_close));

    broker_metrics(out, figures.broker);
    server_metrics(out, figures.server, figures.tls);
    out.counter("pubsubx_log_lines_dropped_total",
                "Log lines dropped because the log reader did not keep up.",
                figures.log_lines_dropped);
    if (figures.store) {
        store_metrics(out, *figures.store);
    }
    if (figures.cluster) {
        cluster_metrics(out, *figures.cluster);
    }
    return out.take();
}

std::string render_status_json(const MetricsSnapshot& snapshot) {
    const SysSnapshot& figures = snapshot.figures;
    const std::size_t connected =
        figures.clients >= figures.lost_clients ? figures.clients - figures.lost_clients : 0;
    const RatePoint now = snapshot.rates.empty() ? RatePoint{} : snapshot.rates.back();
    std::string rates = "[";
    for (const RatePoint& point : snapshot.rates) {
        rates += rates.size() > 1 ? ",[" : "[";
        rates += json_number(point.uptime_seconds) + "," + json_number(point.messages_in) + "," +
                 json_number(point.messages_out) + "," + json_number(point.bytes_in) + "," +
                 json_number(point.bytes_out) + "]";
    }
    rates += "]";
    JsonObject json;
    json.field("version", json_string(snapshot.version))
        .number("start_time_seconds", snapshot.start_time_seconds)
        .number("uptime_seconds", snapshot.uptime_seconds)
        .count("connections", figures.connections)
        .count("clients", connected)
        .count("lost_clients", figures.lost_clients)
        .count("topics", figures.topics)
        .count("subscriptions", figures.subscriptions)
        .count("queued_bytes", figures.queued_bytes)
        .count("messages_in", figures.broker.published)
        .count("messages_out", figures.broker.delivered)
        .count("bytes_in", figures.server.bytes_received)
        .count("bytes_out", figures.server.bytes_sent)
        .count("dropped", figures.broker.dropped + figures.server.frames_unsent_at_close)
        .count("clients_lost_total", figures.broker.clients_lost)
        .number("messages_in_per_second", now.messages_in)
        .number("messages_out_per_second", now.messages_out)
        .number("bytes_in_per_second", now.bytes_in)
        .number("bytes_out_per_second", now.bytes_out)
        .field("store", figures.store ? "true" : "false")
        .field("cluster", figures.cluster ? "true" : "false");
    if (figures.cluster) {
        json.count("cluster_nodes", figures.cluster->nodes);
    }
    // [uptime, messages in/s, messages out/s, bytes in/s, bytes out/s], oldest first.
    json.field("rates", rates);
    return json.close();
}

Health check_health(const MetricsSnapshot* snapshot, std::chrono::steady_clock::time_point now,
                    std::chrono::steady_clock::duration max_age) {
    if (snapshot == nullptr) {
        return {false, "no snapshot from the event loop yet"};
    }
    const auto age = now - snapshot->taken_at;
    if (age > max_age) {
        const double seconds = std::chrono::duration<double>(age).count();
        return {false, "the event loop published no figures for " +
                           std::to_string(static_cast<long long>(seconds)) + " s"};
    }
    return {true, "ok"};
}

}  // namespace pubsubx::http
