// The command-line options of the HTTP endpoints (--http-port, --http-bind): part of the
// server's settings (server/settings.cpp), so that a configuration file sets them too.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstdint>
#include <optional>
#include <string>

namespace CLI {
class App;
}

namespace pubsubx::http {

struct HttpOptions {
    std::optional<std::uint16_t> port;  // none: no HTTP at all (no thread, no timer)
    std::string bind_address = "127.0.0.1";
};

void define_http_options(CLI::App& app, HttpOptions& options);

// Whether `address` (an IP address) reaches only this machine.
inline bool is_loopback(const std::string& address) {
    in_addr v4{};
    if (inet_pton(AF_INET, address.c_str(), &v4) == 1) {
        return (ntohl(v4.s_addr) >> 24) == 127;
    }
    in6_addr v6{};
    if (inet_pton(AF_INET6, address.c_str(), &v6) == 1) {
        return IN6_IS_ADDR_LOOPBACK(&v6) != 0;
    }
    return false;
}

}  // namespace pubsubx::http
