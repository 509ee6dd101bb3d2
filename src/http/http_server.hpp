// The HTTP endpoints of --http-port on their own thread (cpp-httplib): /metrics, /healthz,
// /status.json and the status page at /. They read only the SnapshotBoard. This is the only
// file that includes httplib.h (a slow header): the rest of the program sees this class.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "snapshot_board.hpp"

namespace pubsubx::http {

class HttpServer {
  public:
    // The handlers hold `board`: a thread left behind at stop() can still read it.
    explicit HttpServer(std::shared_ptr<const SnapshotBoard> board);
    ~HttpServer();  // stops
    HttpServer(const HttpServer&) = delete;
    HttpServer& operator=(const HttpServer&) = delete;

    // Binds and listens on `address` (an IP address) and `port` (0: any free port). On
    // failure returns false with the reason in `error`.
    bool listen(const std::string& address, std::uint16_t port, std::string& error);
    std::uint16_t port() const { return port_; }
    // Serves on its own thread until stop().
    void start();
    // Stops accepting and waits up to 1.5 s for the connections in progress (an idle
    // keep-alive connection ends within a second). False when a client was still holding a
    // worker then (one that sends its request a byte at a time): the threads are left to end
    // on their own, so that the broker's shutdown never waits on an HTTP client.
    bool stop();

    // Descriptors the HTTP server holds at the most: the listening socket, a connection per
    // worker, the connections waiting for one, and the one the listener serves itself when
    // they are all taken (then it accepts no more: later clients wait in the kernel's backlog,
    // costing the process nothing). The broker's --max-connections leaves room for them.
    static constexpr std::size_t kWorkers = 4;
    static constexpr std::size_t kWaitingConnections = 8;
    static constexpr std::size_t kMaxDescriptors = 1 + kWorkers + kWaitingConnections + 1;

  private:
    struct Impl;
    std::shared_ptr<Impl> impl_;  // shared with the thread, which may outlive this object
    std::uint16_t port_ = 0;
};

}  // namespace pubsubx::http
