#include "http_service.hpp"

#include <utility>

#include "pubsubx/version.hpp"

namespace pubsubx::http {

namespace {
constexpr auto kInterval = std::chrono::seconds{1};
}

HttpService::HttpService(asio::io_context& io, HttpOptions options, Logger& logger, Figures figures)
    : options_(std::move(options)),
      logger_(logger),
      figures_(std::move(figures)),
      timer_(io),
      started_(std::chrono::steady_clock::now()),
      start_time_seconds_(
          std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
              .count()),
      board_(std::make_shared<SnapshotBoard>()),
      server_(board_) {}

HttpService::~HttpService() {
    stop();
}

std::string HttpService::where(std::uint16_t port) const {
    const bool v6 = options_.bind_address.find(':') != std::string::npos;
    return (v6 ? "[" + options_.bind_address + "]" : options_.bind_address) + ":" +
           std::to_string(port);
}

bool HttpService::listen() {
    std::string error;
    if (!server_.listen(options_.bind_address, options_.port.value_or(0), error)) {
        logger_.error("Cannot listen for HTTP on ", where(options_.port.value_or(0)), ": ", error);
        return false;
    }
    return true;
}

void HttpService::start() {
    publish();
    server_.start();
    timer_.expires_after(kInterval);
    schedule();
    logger_.always("HTTP listening on ", where(port()));
    if (!is_loopback(options_.bind_address)) {
        logger_.warning("--http-bind ", options_.bind_address,
                        ": the metrics and the status page are served without authentication "
                        "to anyone who can reach this address");
    }
}

void HttpService::stop() {
    timer_.cancel();
    if (!server_.stop()) {
        left_threads_behind_ = true;
        logger_.warning(
            "HTTP: a connection still busy 1.5 s after the stop (a client sending "
            "its request slowly) was not waited for");
    }
}

void HttpService::schedule() {
    timer_.async_wait([this](const std::error_code& error) {
        if (error) {
            return;
        }
        publish();
        // From the previous deadline, not from now: one point a second, without drift.
        timer_.expires_at(timer_.expiry() + kInterval);
        schedule();
    });
}

void HttpService::publish() {
    auto snapshot = std::make_shared<MetricsSnapshot>();
    snapshot->figures = figures_();
    snapshot->taken_at = std::chrono::steady_clock::now();
    snapshot->uptime_seconds = std::chrono::duration<double>(snapshot->taken_at - started_).count();
    snapshot->start_time_seconds = start_time_seconds_;
    snapshot->version = kVersion;
    history_.add(snapshot->figures, snapshot->uptime_seconds);
    snapshot->rates = history_.points();
    board_->publish(std::move(snapshot));
}

}  // namespace pubsubx::http
