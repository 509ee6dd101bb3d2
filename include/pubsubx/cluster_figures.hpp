// What a cluster node (--cluster, src/cluster/) reports of itself: for the $SYS topics, the
// counters line and the shutdown line.
#pragma once

#include <cstddef>
#include <cstdint>

namespace pubsubx {

struct ClusterFigures {
    std::uint64_t forwarded = 0;        // local publishes sent to other nodes
    std::uint64_t received = 0;         // messages from other nodes
    std::uint64_t duplicates = 0;       // received twice (by sequence), not delivered again
    std::uint64_t lost = 0;             // sent by other nodes, never arrived (seen in their counts)
    std::uint64_t not_forwarded = 0;    // NATS could not take them (closed, buffer full)
    std::uint64_t dropped_by_nats = 0;  // this node did not read them fast enough
    std::uint64_t damaged = 0;          // batches from other nodes that could not be read
    std::uint64_t disconnects = 0;
    std::uint64_t lease_lapses = 0;  // times this node's lease ended while it ran (paused, cut off)
    std::uint64_t handed_in = 0;     // clients other nodes handed over to this one
    std::uint64_t handed_out = 0;    // and this one to others
    std::uint64_t registry_refusals = 0;  // CONNECTs refused: the registry could not be asked
    std::size_t nodes = 1;                // this one and those it hears from
    std::size_t nats_subscriptions = 0;
    bool connected = false;
};

}  // namespace pubsubx
