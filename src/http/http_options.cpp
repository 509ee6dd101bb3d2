#include "http_options.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <CLI/CLI.hpp>

namespace pubsubx::http {

namespace {

std::string check_ip_address(const std::string& text) {
    in_addr v4{};
    in6_addr v6{};
    if (inet_pton(AF_INET, text.c_str(), &v4) == 1 || inet_pton(AF_INET6, text.c_str(), &v6) == 1) {
        return {};
    }
    return "'" + text + "' is not an IPv4 or IPv6 address";
}

}  // namespace

void define_http_options(CLI::App& app, HttpOptions& options) {
    auto* port =
        app.add_option("--http-port", options.port,
                       "Serve /metrics (Prometheus), /healthz and a status page over HTTP on "
                       "this port (0: any free port; default: no HTTP)")
            ->check(CLI::Range(0, 65535));
    app.add_option("--http-bind", options.bind_address,
                   "With --http-port: address to listen on; the figures are not "
                   "authenticated, so keep it on loopback or behind a firewall")
        ->check(CLI::Validator{check_ip_address, "ADDRESS"})
        ->needs(port)
        ->capture_default_str();
}

}  // namespace pubsubx::http
