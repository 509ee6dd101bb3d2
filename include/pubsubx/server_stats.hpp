// The Asio server's own counters, beside the core's BrokerStats: what happens to connections
// and bytes before and after the core sees them. Plain data, so that the $SYS statistics
// (sys_topics.hpp) can read them without Asio.
#pragma once

#include <cstdint>

namespace pubsubx::server {

struct ServerStats {
    std::uint64_t connections_accepted = 0;
    std::uint64_t connections_refused = 0;  // over max_connections
    std::uint64_t connect_timeouts = 0;
    std::uint64_t write_timeouts = 0;
    std::uint64_t frames_too_long = 0;
    // Frames (whole or partly written) of writes cut short by a closing connection: with the
    // core's drop counters they explain every message a client never received.
    std::uint64_t frames_unsent_at_close = 0;
    // Bytes read from and written to client sockets: one addition per system call.
    std::uint64_t bytes_received = 0;
    std::uint64_t bytes_sent = 0;
};

}  // namespace pubsubx::server
