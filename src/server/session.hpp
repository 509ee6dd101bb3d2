// One client connection: reads frames into the broker core and writes what the core queued for
// its client, with at most one write in flight that carries everything queued so far.
#pragma once

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>

#include "pubsubx/broker.hpp"
#include "pubsubx/protocol.hpp"

namespace pubsubx::server {

class Server;

// A socket bound to the io_context's own executor: 40 bytes smaller than one holding the
// polymorphic any_io_executor, which counts with 10,000 idle connections.
using Socket = asio::basic_stream_socket<asio::ip::tcp, asio::io_context::executor_type>;

class Session final : public std::enable_shared_from_this<Session>, public Connection {
  public:
    Session(Socket socket, Server& server);
    ~Session();
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    void start();
    void outbound_ready() override;
    void close_requested(std::string_view reason) override;
    // Closes the connection if it overran the connect or the write deadline.
    void check_deadlines(TimePoint now);

  private:
    friend class Server;  // links sessions into its list

    void enable_keepalive();
    void wait_readable();
    void on_readable(const std::error_code& error);
    void handle_bytes(std::string_view bytes);
    void flush();
    void on_written(const std::error_code& error, std::size_t written);
    // Stops reading, writes what is queued plus `error_frame` (if any), then closes.
    void close_after_flush(std::string_view error_frame);
    // The same after `delay` (a refused secret is answered slowly).
    void close_after_delay(std::string_view error_frame, Clock::duration delay);
    // The peer is gone or broken: its client becomes lost and the socket is closed now.
    void lose(std::string_view why);
    void close_socket();

    Socket socket_;
    Server& server_;
    FrameSplitter splitter_;
    std::string writing_;  // the bytes of the write in flight
    // The error frame that goes out after everything queued when closing (rarely set).
    std::unique_ptr<std::string> closing_frame_;
    // Pending (no client yet): when the connection was accepted. Otherwise: when the write in
    // flight started. One field serves both deadlines: a pending connection writes nothing
    // until it is closing, and then only its write deadline applies.
    TimePoint deadline_start_;
    Session* previous_session_ = nullptr;
    Session* next_session_ = nullptr;
    bool listed_ = false;  // in the server's list (the server may be destroyed first)
    bool write_in_flight_ = false;
    bool flush_posted_ = false;
    bool closing_ = false;
    bool closed_ = false;
};

}  // namespace pubsubx::server
