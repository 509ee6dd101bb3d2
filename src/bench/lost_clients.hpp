// Scenarios made of lost clients, for the durable store (issue 11; bench/durability reads the
// store's own counters and file sizes beside them): a flood queued for lost subscribers, and
// rounds of clients that are lost, restored or left to expire.
#pragma once

#include <cstddef>
#include <string>

#include "scenarios.hpp"

namespace pubsubx::bench {

struct LostFloodOptions {
    int subscribers = 1;        // subscribed to the topic, then lost (connection reset)
    long messages = 1'000'000;  // published once each; queued for every subscriber
    std::size_t size = 16;      // payload bytes
    std::string topic;          // empty: a topic of the run's own
    long rate = 0;              // messages published a second; 0: as fast as the broker reads
};

struct ChurnOptions {
    int keepers = 10;       // come back every round: RESTORED, they receive their queue
    int leavers = 10;       // new every round and never back: they expire (--lost-timeout)
    long messages = 1'000;  // published each round while all of them are lost
    std::size_t size = 16;
    double seconds = 60;  // rounds start until this much time has passed
};

// `subscribers` clients subscribe to one topic and are lost (their connections reset, no
// DISCONNECT); then one publisher sends `messages` messages as fast as the broker takes them
// (or `rate` a second), and a barrier tells when the broker has handled them all. The lost clients
// are left behind: the broker keeps their queues (and a --data-dir broker writes them to its
// store).
Result run_lost_flood(const Common& common, const LostFloodOptions& options);

// Rounds until `seconds` have passed: the keepers and this round's leavers connect (keepers
// after the first round are RESTORED and receive what was queued for them), subscribe to one
// topic, and are lost; then `messages` messages are published to that topic. The broker needs
// a --lost-timeout longer than a round, or the keepers expire too.
Result run_churn(const Common& common, const ChurnOptions& options);

}  // namespace pubsubx::bench
