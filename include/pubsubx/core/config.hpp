// The core's limits (docs/robustness.md) and its counters.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

#include "pubsubx/core/client.hpp"

namespace pubsubx {

// For every count and size, 0 means "no limit".
struct BrokerConfig {
    // How long a lost client's subscriptions and queue are kept; zero keeps nothing.
    Clock::duration lost_timeout = std::chrono::seconds{60};
    // Per client, queued plus in flight; when full the oldest messages are dropped. 2 MiB:
    // the 1 MiB of queue before issue 9 came with up to as much again in a write in flight.
    std::size_t max_queue_bytes = 2 * 1024 * 1024;
    std::size_t max_total_queue_bytes = 1024 * 1024 * 1024;  // over all clients
    std::size_t max_topics_per_client = 10'000;
    std::size_t max_topic_length = 1024;
    // Levels of a wildcard filter, so that no filter makes matching expensive; 0 (or more
    // than FilterTree::kMaxLevels) means that ceiling. Exact topics are found by hash whatever
    // their levels, and are not limited.
    std::size_t max_topic_levels = 32;
    std::size_t max_lost_clients = 100'000;  // beyond it the longest-lost one is removed
    // A connected client whose queue overflows for this long is cut off (it becomes lost);
    // zero: never.
    Clock::duration slow_consumer_grace = std::chrono::seconds{10};
    // Refuse CONNECTs without a secret.
    bool require_secret = false;
};

// The limits that may change while clients are connected (SIGHUP) take `from`'s values; the
// others stay. max_topic_levels is not among them: filters are indexed by it.
inline void adopt_run_time_limits(BrokerConfig& into, const BrokerConfig& from) {
    into.lost_timeout = from.lost_timeout;
    into.max_queue_bytes = from.max_queue_bytes;
    into.max_total_queue_bytes = from.max_total_queue_bytes;
    into.max_topics_per_client = from.max_topics_per_client;
    into.max_topic_length = from.max_topic_length;
    into.max_lost_clients = from.max_lost_clients;
    into.slow_consumer_grace = from.slow_consumer_grace;
    into.require_secret = from.require_secret;
}

struct BrokerStats {
    std::uint64_t published = 0;
    std::uint64_t delivered = 0;           // messages put into subscribers' queues
    std::uint64_t dropped = 0;             // frames dropped from full queues, for any reason
    std::uint64_t dropped_global_cap = 0;  // of those, dropped because of the global cap
    std::uint64_t clients_lost = 0;
    std::uint64_t clients_restored = 0;
    std::uint64_t clients_recovered = 0;  // loaded from the store at start
    std::uint64_t clients_expired = 0;
    std::uint64_t lost_clients_evicted = 0;  // removed early: too many lost clients
    std::uint64_t slow_consumers_cut = 0;
    std::uint64_t control_backlog_cut = 0;  // never read their error frames
    std::uint64_t sessions_taken_over = 0;
    std::uint64_t auth_failures = 0;   // wrong or missing secrets
    std::uint64_t auth_throttled = 0;  // CONNECTs refused unchecked during a back-off
    // Invalid, too long, over the per-client limit, a misplaced wildcard, or a PUBLISH to a
    // wildcard or `$SYS` topic.
    std::uint64_t topics_refused = 0;
    // First frames that were not a valid CONNECT (garbage, a bad name or secret).
    std::uint64_t bad_connects = 0;
    // --users: PUBLISHes and SUBSCRIBEs outside the client's rights, and subscriptions ended
    // because a reload of the users file (or a restore) no longer allows them.
    std::uint64_t not_allowed = 0;
    std::uint64_t subscriptions_revoked = 0;
};

// "2.5 s": a duration as the logs and error frames print it.
std::string seconds_text(Clock::duration duration);

// The counters as one `name=value ...` line, for logs and scripts.
std::string describe(const BrokerStats& stats);

}  // namespace pubsubx
