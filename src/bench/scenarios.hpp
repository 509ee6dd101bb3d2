// pubsubx-bench's scenarios. Each one drives a running broker over TCP, checks every delivery
// (count, order per publisher, duplicates) and returns its figures.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>
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

// Where a throughput run publishes and what its subscribers subscribe to. Every subscriber must
// receive every message, so `filter` must match all the topics.
struct TopicOptions {
    // Topic i of `topics` is `pattern` with every {i} replaced by i (with no {i}, i is
    // appended when there are several). Empty: a topic of the run's own.
    std::string pattern;
    long topics = 1;  // each publisher sends its message k to topic k mod topics
    // Subscribers subscribe to this (a wildcard filter, say) instead of every topic.
    std::string filter;
    // One more connection holds this many filters that match none of the topics, so that the
    // broker routes with them in place; filter i is `noise_pattern` with {i} replaced by i.
    long noise_filters = 0;
    std::string noise_pattern = "zz{i}/+/q";
};

struct ThroughputOptions {
    int publishers = 1;
    int subscribers = 1;
    long messages = 1'000'000;  // in all, split over the publishers
    std::size_t size = 16;      // payload bytes
    long window = 10'000;       // published but not yet received by the slowest subscriber
    TopicOptions topics = {};
    // Another broker of a cluster, on the same host, for the subscribers (0: the publishers'
    // own): publishers on one node, subscribers on another.
    std::uint16_t sub_port = 0;
    // A wait after every subscriber has seen a probe and before the clock starts: the probes
    // prove the subscriptions reach across, but a cluster may still be settling (0: none).
    long settle_ms = 0;
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
    // The lost client reconnects to this port (same host) instead of the one it was lost on:
    // another node of a cluster, which must have it handed over (0: the same port).
    std::uint16_t restore_port = 0;
};

struct FiltersOptions {
    long filters = 100'000;
    int connections = 1;  // the filters are spread evenly over them
    // Filter i is this with {i} replaced by i; it must give distinct filters.
    std::string pattern = "f/{i}/+";
};

Result run_throughput(const Common& common, const ThroughputOptions& options);
Result run_latency(const Common& common, const LatencyOptions& options);
Result run_conns(const Common& common, const ConnsOptions& options);
Result run_drain(const Common& common, const DrainOptions& options);
// Broker memory per wildcard filter: RSS before and after subscribing them all; a sample of
// filters is checked to deliver a message to its owner, once.
Result run_filters(const Common& common, const FiltersOptions& options);

// `pattern` with every {i} replaced by `index`; with no {i}, the index is appended when
// `append` is true.
std::string expand(std::string_view pattern, long index, bool append);

// The broker process listening on `port` on this machine, or 0.
pid_t find_listening_process(std::uint16_t port);

// For scenarios in other files, and for pubsubx-nats-pair, which reports as pubsubx-bench does.
class BenchClient;
class OrderCheck;
void add(Result& result, std::string key, double value, std::string shown);
void fail(Result& result, const std::string& problem);  // the first problem is kept
// published_per_s (over `publish_seconds`), delivered_per_s, MB_per_s and seconds (over
// `seconds`), for payloads of `size` bytes: the throughput figures every 1->N run reports.
void add_rates(Result& result, long published, double publish_seconds, long delivered,
               double seconds, std::size_t size);
// delivered, lost, out_of_order and duplicates of `checks` against `expected` deliveries; the
// result fails on any loss, disorder, repeat or unrecognised payload.
void add_checks(Result& result, long expected, const std::vector<OrderCheck>& checks);
// A JSON string: our keys and scenario names are plain ASCII, but quote them properly anyway.
std::string json_string(const std::string& text);
void print_json(const Result& result);   // one line (--json)
void print_table(const Result& result);  // the scenario, then a figure a line
std::string fixed(double value, int decimals);
std::string rate_text(double per_second);  // "1.23 M msgs/s", "456.7 k msgs/s"
// The broker has handled everything `client` sent before: a probe on a private topic came back.
// False on a timeout or when the broker refused something `client` sent (see first_error()).
bool barrier(Loop& loop, BenchClient& client);

}  // namespace pubsubx::bench
