// The HTTP endpoints of --http-port on their own thread (cpp-httplib): /metrics, /healthz,
// /status.json and the status page at /. They read only the SnapshotBoard. This is the only
// file that includes httplib.h (a slow header): the rest of the program sees this class.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "snapshot_board.hpp"

namespace pubsubx::http {

class HttpServer {
  public:
    // `board` must outlive the server.
    explicit HttpServer(const SnapshotBoard& board);
    ~HttpServer();  // stops
    HttpServer(const HttpServer&) = delete;
    HttpServer& operator=(const HttpServer&) = delete;

    // Binds and listens on `address` (an IP address) and `port` (0: any free port). On
    // failure returns false with the reason in `error`.
    bool listen(const std::string& address, std::uint16_t port, std::string& error);
    std::uint16_t port() const { return port_; }
    // Serves on its own thread until stop().
    void start();
    void stop();

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
    std::uint16_t port_ = 0;
};

}  // namespace pubsubx::http
