// The load generator's connections: plain non-blocking sockets in one epoll set, driven by one
// thread, so that the harness costs one core and nothing else. Writes are pipelined: frames
// are appended to a buffer and go out in as few send() calls as the kernel allows.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "pubsubx/protocol.hpp"

struct ssl_ctx_st;
struct ssl_st;

namespace pubsubx::bench {

using BenchClock = std::chrono::steady_clock;

struct Endpoint {
    std::string host = "127.0.0.1";
    std::uint16_t port = 12000;
    // --tls: every link does a TLS handshake with this context (null: plain TCP).
    std::shared_ptr<ssl_ctx_st> tls;
    bool tls_insecure = false;  // no check of the server's certificate and name
};

// The context for --tls; throws std::runtime_error when `ca_file` cannot be used.
std::shared_ptr<ssl_ctx_st> make_tls_context(const std::string& ca_file, bool insecure);

class Loop;

// One connection to the broker. Frames received are handed to `on_frame`.
class Link {
  public:
    using OnFrame = std::function<void(std::string_view frame)>;

    // Connects (blocking, then switches to non-blocking) and joins the loop; throws
    // std::runtime_error when the broker cannot be reached.
    Link(Loop& loop, const Endpoint& endpoint, OnFrame on_frame);
    ~Link();
    Link(const Link&) = delete;
    Link& operator=(const Link&) = delete;

    void queue_frame(std::string_view frame);  // appended; sent by the next flush()
    void send_frame(std::string_view frame);   // appended and flushed now
    void flush();
    // Ends the connection without DISCONNECT, with a reset: the broker sees an abrupt loss.
    void reset();
    bool closed() const { return fd_ < 0 || peer_closed_; }
    std::size_t unsent() const { return out_.size() - out_head_ + (tls_out_.size() - tls_sent_); }

  private:
    friend class Loop;
    void on_readable();
    void on_writable();
    void watch_writable(bool on);
    void handshake(const Endpoint& endpoint);
    // Reads with TLS; returns false at the end of the connection.
    bool read_tls();
    // Writes what it can with TLS; false when the connection is broken.
    bool write_tls();
    enum class Sent { all, socket_full, failed };
    Sent send_from(const std::string& bytes, std::size_t& sent);

    Loop& loop_;
    int fd_ = -1;
    ssl_st* ssl_ = nullptr;  // --tls
    bool peer_closed_ = false;
    bool watching_writable_ = false;
    std::string out_;
    std::size_t out_head_ = 0;
    // --tls: the records OpenSSL made (its write BIO appends here) and how much of them is
    // sent; many records go out in one send(), as the broker sends them.
    std::string tls_out_;
    std::size_t tls_sent_ = 0;
    FrameSplitter splitter_{64 * 1024 * 1024};
    OnFrame on_frame_;
};

// The epoll set all links share.
class Loop {
  public:
    Loop();
    ~Loop();
    Loop(const Loop&) = delete;
    Loop& operator=(const Loop&) = delete;

    // Waits up to `timeout` for socket events and dispatches them; returns how many.
    int poll(std::chrono::milliseconds timeout);
    // Calls poll until `done()` or the timeout; true if done.
    bool run_until(const std::function<bool()>& done, std::chrono::milliseconds timeout);
    int epoll_fd() const { return epoll_fd_; }

  private:
    int epoll_fd_ = -1;
};

// The one read buffer all links share: the loop runs one read at a time.
inline constexpr std::size_t kReadBufferSize = 256 * 1024;

}  // namespace pubsubx::bench
