// --http-port: a timer on the event loop gathers the broker's figures once a second into an
// immutable MetricsSnapshot (with the rate history) and publishes it for the HTTP thread.
// The figures come through a getter, so this room does not depend on the server's.
#pragma once

#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <memory>

#include "http_options.hpp"
#include "http_server.hpp"
#include "metrics_snapshot.hpp"
#include "pubsubx/log.hpp"
#include "pubsubx/sys_topics.hpp"
#include "snapshot_board.hpp"

namespace pubsubx::http {

class HttpService {
  public:
    using Figures = std::function<SysSnapshot()>;
    // `figures` is called on the event loop only, once a second once started.
    HttpService(asio::io_context& io, HttpOptions options, Logger& logger, Figures figures);
    ~HttpService();
    HttpService(const HttpService&) = delete;
    HttpService& operator=(const HttpService&) = delete;

    // Binds the port; on failure logs "Cannot listen for HTTP on ..." and returns false.
    bool listen();
    // Publishes the first snapshot, starts the HTTP thread and the timer, logs where it
    // listens.
    void start();
    // Stops the timer and the HTTP server's threads: joined, or left behind after 1.5 s with a
    // client still sending its request (a WARNING says so).
    void stop();
    // The HTTP threads were left running at stop(): the process must then end without running
    // the static destructors (httplib's own data), which those threads may still read.
    bool left_threads_behind() const { return left_threads_behind_; }
    std::uint16_t port() const { return server_.port(); }

  private:
    void publish();
    void schedule();
    std::string where(std::uint16_t port) const;

    HttpOptions options_;
    Logger& logger_;
    Figures figures_;
    asio::steady_timer timer_;
    std::chrono::steady_clock::time_point started_;
    double start_time_seconds_;
    RateHistory history_;
    std::shared_ptr<SnapshotBoard> board_;  // shared with the HTTP server's threads
    HttpServer server_;
    bool left_threads_behind_ = false;
};

}  // namespace pubsubx::http
