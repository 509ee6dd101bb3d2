// pubsubx-bench's scenarios. Each one drives a running broker over TCP, checks every delivery
// (count, order per publisher, duplicates) and returns its figures.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <string>
#include <vector>

#include "link.hpp"

namespace pubsubx::bench {

struct Figure {
    std::string key;  // for --json
    double value = 0;
    std::string shown;  // for the table: the value with its unit
};

struct Result {
    std::string scenario;  // "throughput 1->10, 16 B", ...
    std::vector<Figure> figures;
    bool complete = true;  // false: losses, errors or a timeout (see problem)
    std::string problem;
};

struct Common {
    Endpoint endpoint;
    pid_t broker_pid = 0;  // 0: found from the listening port when a scenario needs it
    std::chrono::seconds timeout{60};
};

struct ThroughputOptions {
    int publishers = 1;
    int subscribers = 1;
    long messages = 1'000'000;  // in all, split over the publishers
    std::size_t size = 16;      // payload bytes
    long window = 10'000;       // published but not yet received by the slowest subscriber
};

struct LatencyOptions {
    int subscribers = 1;
    long rate = 10'000;  // messages per second
    long messages = 50'000;
    std::size_t size = 16;
};

struct ConnsOptions {
    long connections = 10'000;
};

struct DrainOptions {
    long messages = 10'000;
    std::size_t size = 16;
};

Result run_throughput(const Common& common, const ThroughputOptions& options);
Result run_latency(const Common& common, const LatencyOptions& options);
Result run_conns(const Common& common, const ConnsOptions& options);
Result run_drain(const Common& common, const DrainOptions& options);

// The broker process listening on `port` on this machine, or 0.
pid_t find_listening_process(std::uint16_t port);

}  // namespace pubsubx::bench
