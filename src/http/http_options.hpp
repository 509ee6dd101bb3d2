// The command-line options of the HTTP endpoints (--http-port, --http-bind).
#pragma once

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
bool is_loopback(const std::string& address);

}  // namespace pubsubx::http
