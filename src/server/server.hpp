// The Asio side of the broker: accepts connections, owns the broker core, the lost-client
// expiry timer and the read buffer that all sessions share.
#pragma once

#include <array>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "pubsubx/broker.hpp"
#include "pubsubx/log.hpp"

namespace pubsubx::server {

struct ServerOptions {
    std::string bind_address = "127.0.0.1";
    std::uint16_t port = 12000;
    std::size_t max_frame = 1024 * 1024;
};

class Server {
  public:
    // Binds and listens at once; throws std::system_error when it cannot (port in use, ...).
    Server(asio::io_context& io, const ServerOptions& options, Broker& broker, Logger& logger);

    asio::ip::tcp::endpoint local_endpoint() const { return acceptor_.local_endpoint(); }
    void start();
    void stop();

    Broker& broker() { return broker_; }
    Logger& logger() { return logger_; }
    std::size_t max_frame() const { return options_.max_frame; }
    // Idle sessions own no read buffer: they wait for readability, then read into this one.
    std::span<char> read_buffer() { return read_buffer_; }
    // A client may have become lost: make sure the expiry timer is armed for the earliest.
    void schedule_expiry();

  private:
    void accept_next();
    void on_expiry_timer();

    ServerOptions options_;
    Broker& broker_;
    Logger& logger_;
    asio::ip::tcp::acceptor acceptor_;
    asio::steady_timer accept_retry_timer_;
    asio::steady_timer expiry_timer_;
    bool expiry_armed_ = false;
    TimePoint expiry_armed_for_{};
    std::array<char, 64 * 1024> read_buffer_{};
};

}  // namespace pubsubx::server
