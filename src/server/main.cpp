// pubsubx-server: parses the command line, starts the broker and runs it until SIGINT/SIGTERM.
#include <CLI/CLI.hpp>
#include <asio/io_context.hpp>
#include <asio/signal_set.hpp>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <optional>
#include <system_error>

#include "pubsubx/broker.hpp"
#include "pubsubx/log.hpp"
#include "pubsubx/version.hpp"
#include "server.hpp"

namespace {

struct CommandLine {
    pubsubx::server::ServerOptions server;
    double lost_timeout_seconds = 60.0;
    std::size_t max_queue_bytes = 1024 * 1024;
    bool verbose = false;
    bool quiet = false;
};

void define_options(CLI::App& app, CommandLine& line) {
    app.add_option("port", line.server.port, "TCP port to listen on (0: any free port)")
        ->check(CLI::Range(0, 65535))
        ->capture_default_str();
    app.add_option("--bind", line.server.bind_address,
                   "Address to listen on (0.0.0.0 or :: accepts remote clients)")
        ->capture_default_str();
    app.add_option("--lost-timeout", line.lost_timeout_seconds,
                   "Seconds a lost client's subscriptions and messages are kept (0: none)")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    app.add_option("--max-queue", line.max_queue_bytes,
                   "Bytes queued per client; when full, the oldest messages are dropped")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    app.add_option("--max-frame", line.server.max_frame,
                   "Largest frame accepted, in bytes; a longer one closes the connection")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    auto* verbose = app.add_flag("-v,--verbose", line.verbose, "Log every message");
    app.add_flag("-q,--quiet", line.quiet, "Log errors only")->excludes(verbose);
    app.set_version_flag("--version", std::string{"pubsubx-server "} + pubsubx::kVersion);
}

pubsubx::LogLevel log_level(const CommandLine& line) {
    if (line.quiet) {
        return pubsubx::LogLevel::quiet;
    }
    return line.verbose ? pubsubx::LogLevel::verbose : pubsubx::LogLevel::info;
}

std::string endpoint_text(const asio::ip::tcp::endpoint& endpoint) {
    const auto address = endpoint.address();
    const std::string host =
        address.is_v6() ? "[" + address.to_string() + "]" : address.to_string();
    return host + ":" + std::to_string(endpoint.port());
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{
        "PubSubX broker: publish/subscribe over TCP, keeping the messages of lost "
        "clients until they reconnect"};
    CommandLine line;
    define_options(app, line);
    CLI11_PARSE(app, argc, argv);

    pubsubx::Logger logger{log_level(line)};
    pubsubx::BrokerConfig config;
    config.lost_timeout = std::chrono::duration_cast<pubsubx::Clock::duration>(
        std::chrono::duration<double>(line.lost_timeout_seconds));
    config.max_queue_bytes = line.max_queue_bytes;
    pubsubx::Broker broker{config, logger};

    // The io_context is destroyed before the broker: sessions still owned by its handlers
    // never outlive the core.
    asio::io_context io{1};
    std::error_code error;
    const auto address = asio::ip::make_address(line.server.bind_address, error);
    if (error) {
        logger.error("Invalid --bind address '", line.server.bind_address, "'");
        return 2;
    }
    std::optional<pubsubx::server::Server> server;
    try {
        server.emplace(io, line.server, broker, logger);
    } catch (const std::system_error& failure) {
        logger.error("Cannot listen on ", endpoint_text({address, line.server.port}), ": ",
                     failure.code().message());
        return 1;
    }
    server->start();

    asio::signal_set signals{io, SIGINT, SIGTERM};
    signals.async_wait([&](const std::error_code& wait_error, int) {
        if (!wait_error) {
            logger.info("Shutting down");
            server->stop();
            io.stop();
        }
    });

    const std::string where = endpoint_text(server->local_endpoint());
    if (address.is_loopback()) {
        logger.always("Server started, listening on ", where,
                      " (local clients only; use --bind 0.0.0.0 to accept remote clients)");
    } else {
        logger.always("Server started, listening on ", where);
    }
    io.run();
    return 0;
}
