// What the HTTP endpoints (--http-port) show: the broker's figures read at one moment by the
// event loop, with the message rates of the last minutes. Plain data and pure rendering (the
// Prometheus text format for /metrics, JSON for the status page), so the tests need no
// sockets and the HTTP thread only reads what the loop published.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "pubsubx/sys_topics.hpp"

namespace pubsubx::http {

// The rates over one interval between two snapshots (per second).
struct RatePoint {
    double uptime_seconds = 0;  // at the end of the interval
    double messages_in = 0;     // published
    double messages_out = 0;    // delivered to subscribers' queues
    double bytes_in = 0;        // read from client sockets
    double bytes_out = 0;       // written to client sockets
};

struct MetricsSnapshot {
    SysSnapshot figures;
    std::string version;
    double start_time_seconds = 0;  // the process's start, seconds since the Unix epoch
    double uptime_seconds = 0;
    // When the event loop took it: /healthz says whether the loop still publishes.
    std::chrono::steady_clock::time_point taken_at;
    std::vector<RatePoint> rates;  // oldest first; the last is the current rate
};

// The rates of the last `capacity` intervals, fed one snapshot at a time by the event loop.
class RateHistory {
  public:
    explicit RateHistory(std::size_t capacity = 600) : capacity_(capacity) {}
    // Adds the rates since the previous snapshot (none for the first one).
    void add(const SysSnapshot& figures, double uptime_seconds);
    std::vector<RatePoint> points() const { return {points_.begin(), points_.end()}; }

  private:
    std::size_t capacity_;
    bool have_previous_ = false;
    double previous_uptime_ = 0;
    SysSnapshot previous_;
    std::deque<RatePoint> points_;
};

// /metrics: the Prometheus text exposition format, version 0.0.4.
inline constexpr const char* kPrometheusContentType = "text/plain; version=0.0.4; charset=utf-8";
std::string render_prometheus(const MetricsSnapshot& snapshot);

// /status.json: the figures and the rate history the status page draws.
std::string render_status_json(const MetricsSnapshot& snapshot);

// /healthz: whether the event loop published a snapshot within `max_age` of `now`.
struct Health {
    bool ok = false;
    std::string text;  // "ok", or why not
};
Health check_health(const MetricsSnapshot* snapshot, std::chrono::steady_clock::time_point now,
                    std::chrono::steady_clock::duration max_age);

}  // namespace pubsubx::http
