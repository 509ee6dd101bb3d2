// The Asio server's own settings: where it listens and its connection-level limits. Plain
// data, so that the settings (settings.hpp) are read without Asio.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

#include "pubsubx/core/client.hpp"

namespace pubsubx::server {

// The connection-level limits (docs/robustness.md). For each of them 0 means "no limit".
struct ServerOptions {
    std::string bind_address = "127.0.0.1";
    std::uint16_t port = 12000;
    bool plain = true;  // false: --no-plain, TLS only (the plain port is not opened)
    // --tls-name-from-cert: a TLS client's CONNECT name must be in its certificate.
    bool tls_names_from_certificates = false;
    std::size_t max_frame = 1024 * 1024;
    std::size_t max_connections = 65'536;
    // A connection that has not sent a valid CONNECT by then is closed (slowloris).
    Clock::duration connect_timeout = std::chrono::seconds{10};
    // A write the peer has not taken within this time means it stopped reading: it is lost.
    Clock::duration write_timeout = std::chrono::seconds{30};
    // TCP keepalive: idle seconds before the first probe (3 probes, idle/3 apart).
    int keepalive_idle_seconds = 60;
    // How often the broker publishes its statistics on $SYS/broker/... (sys_topics.hpp); zero:
    // never, and then there is no timer at all.
    Clock::duration sys_interval = std::chrono::seconds{10};
};

// The connection limits that may change at run time (SIGHUP) take `from`'s values.
inline void adopt_run_time_limits(ServerOptions& into, const ServerOptions& from) {
    into.max_frame = from.max_frame;
    into.max_connections = from.max_connections;
    into.connect_timeout = from.connect_timeout;
    into.write_timeout = from.write_timeout;
}

}  // namespace pubsubx::server
