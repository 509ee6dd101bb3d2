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
    // TLS (--tls-port): handshakes completed, and failed (garbage or plain text on the TLS
    // port, an unsupported protocol version, a client certificate that is missing, expired or
    // untrusted, a peer that left, or a timeout); the timeouts (--connect-timeout) among them.
    std::uint64_t tls_handshakes = 0;
    std::uint64_t tls_handshakes_failed = 0;
    std::uint64_t tls_handshake_timeouts = 0;
    // CONNECTs refused by --tls-name-from-cert: the name is not in the client certificate.
    std::uint64_t tls_names_refused = 0;
    // Bytes read from and written to client sockets: one addition per system call (for TLS,
    // the bytes of frames, decrypted).
    std::uint64_t bytes_received = 0;
    std::uint64_t bytes_sent = 0;
};

}  // namespace pubsubx::server
