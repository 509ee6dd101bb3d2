// The broker describes itself on `$SYS/broker/...` topics, as Mosquitto does (the list, with
// each topic's meaning, is in docs/protocol.md). This is the pure part: given a snapshot of
// the counters at `now`, it returns every topic with its value as text, and keeps the snapshot
// to compute the rates over the next interval. The server takes a snapshot every
// --sys-interval and publishes the result with Broker::publish_system.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pubsubx/cluster_figures.hpp"
#include "pubsubx/core/config.hpp"
#include "pubsubx/server_stats.hpp"
#include "pubsubx/store_figures.hpp"

namespace pubsubx {

inline constexpr std::string_view kSysPrefix{"$SYS/broker/"};

// The counters and gauges the statistics are made of, read at one moment.
struct SysSnapshot {
    BrokerStats broker;
    server::ServerStats server;
    std::size_t clients = 0;  // connected and lost
    std::size_t lost_clients = 0;
    std::size_t topics = 0;
    std::size_t subscriptions = 0;
    std::size_t filters = 0;       // wildcard filters with subscribers (counted in topics too)
    std::size_t queued_bytes = 0;  // Broker::total_queued_bytes
    std::size_t connections = 0;   // open sockets, with or without a client
    std::uint64_t log_lines_dropped = 0;
    bool tls = false;                       // with --tls-port only: the tls/ topics
    std::optional<StoreFigures> store;      // with --data-dir only
    std::optional<ClusterFigures> cluster;  // with --cluster only
};

struct SysMessage {
    std::string topic;  // with kSysPrefix
    std::string value;  // plain decimal text, but for the version and the uptime
};

class SysTopics {
  public:
    explicit SysTopics(TimePoint started) : started_(started), previous_at_(started) {}

    // Every topic and its value at `now`. The rates cover the time since the previous call,
    // or since `started` for the first one.
    std::vector<SysMessage> update(const SysSnapshot& snapshot, TimePoint now);

  private:
    TimePoint started_;
    TimePoint previous_at_;
    SysSnapshot previous_;
    std::size_t most_connected_ = 0;  // seen at an update, as Mosquitto's clients/maximum
};

}  // namespace pubsubx
