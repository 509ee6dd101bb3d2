#include "server.hpp"

#include <chrono>

#include "session.hpp"

namespace pubsubx::server {

namespace {
// After a failed accept (out of file descriptors, say), wait a little instead of spinning.
constexpr auto kAcceptRetryDelay = std::chrono::milliseconds{100};
}  // namespace

Server::Server(asio::io_context& io, const ServerOptions& options, Broker& broker, Logger& logger)
    : options_(options),
      broker_(broker),
      logger_(logger),
      acceptor_(io),
      accept_retry_timer_(io),
      expiry_timer_(io) {
    const asio::ip::tcp::endpoint endpoint{asio::ip::make_address(options.bind_address),
                                           options.port};
    acceptor_.open(endpoint.protocol());
    acceptor_.set_option(asio::ip::tcp::acceptor::reuse_address(true));
    acceptor_.bind(endpoint);
    acceptor_.listen(asio::socket_base::max_listen_connections);
}

void Server::start() {
    accept_next();
}

void Server::stop() {
    std::error_code ignored;
    acceptor_.close(ignored);
    accept_retry_timer_.cancel();
    expiry_timer_.cancel();
}

void Server::accept_next() {
    acceptor_.async_accept([this](const std::error_code& error, asio::ip::tcp::socket socket) {
        if (error == asio::error::operation_aborted || !acceptor_.is_open()) {
            return;
        }
        if (error) {
            logger_.error("Cannot accept a connection: ", error.message());
            accept_retry_timer_.expires_after(kAcceptRetryDelay);
            accept_retry_timer_.async_wait([this](const std::error_code& wait_error) {
                if (!wait_error) {
                    accept_next();
                }
            });
            return;
        }
        std::make_shared<Session>(std::move(socket), *this)->start();
        accept_next();
    });
}

void Server::schedule_expiry() {
    const auto next = broker_.next_expiry();
    if (!next || (expiry_armed_ && expiry_armed_for_ <= *next)) {
        return;
    }
    expiry_armed_ = true;
    expiry_armed_for_ = *next;
    expiry_timer_.expires_at(*next);
    expiry_timer_.async_wait([this](const std::error_code& error) {
        if (!error) {
            on_expiry_timer();
        }
    });
}

void Server::on_expiry_timer() {
    expiry_armed_ = false;
    broker_.expire_lost_clients(Clock::now());
    schedule_expiry();
}

}  // namespace pubsubx::server
