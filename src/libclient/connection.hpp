// One connection to a broker, on the client's strand: resolves, connects (TLS when asked),
// says CONNECT, then reads and splits the server's frames and writes ours with at most one
// write in flight. It reports to its listener; the Client decides what a loss means.
#pragma once

#include <array>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "pubsubx/protocol.hpp"
#include "server_replies.hpp"

namespace asio::ssl {
class context;
template <typename Stream>
class stream;
}  // namespace asio::ssl

namespace pubsubx::client {

using Strand = asio::strand<asio::any_io_executor>;

// An empty buffer keeps up to 1 MiB for the next burst; a bigger one goes back to the system
// (Client::Impl::trim, a few seconds after the traffic), so that an idle client does not hold
// the memory of its busiest moment.
inline void release_if_large(std::string& buffer) {
    if (buffer.empty() && buffer.capacity() > 1024 * 1024) {
        std::string{}.swap(buffer);
    }
}

// What the connection reports; every call is made on the strand.
class ConnectionListener {
  public:
    virtual void on_accepted() = 0;
    virtual void on_restored(std::vector<std::string> topics) = 0;
    // The server refused the CONNECT with this frame (`ERROR: Name already taken`).
    virtual void on_refused(std::string_view frame) = 0;
    virtual void on_message(std::string_view topic, std::string_view data) = 0;
    // An ERROR: frame on a live connection, which stays open. A message whose topic is
    // `ERROR:` arrives here too: the protocol cannot tell them apart (docs/protocol.md).
    virtual void on_error(std::string_view frame) = 0;
    // All frames of one read were reported.
    virtual void on_read_done() {}
    // Everything queued up to this many bytes (Connection::bytes_queued) has been written.
    virtual void on_written(std::uint64_t bytes) = 0;
    // No connection was made: a network or TLS failure, with a description.
    virtual void on_connect_failed(const std::error_code& error, std::string_view reason) = 0;
    // The connection ended: `requested` after our DISCONNECT.
    virtual void on_closed(bool requested, const std::error_code& error) = 0;

  protected:
    ~ConnectionListener() = default;
};

class Connection : public std::enable_shared_from_this<Connection> {
  public:
    Connection(Strand strand, ConnectionListener& listener);
    ~Connection();

    // TLS for this connection: the server's certificate and host name are checked unless
    // `insecure`.
    void use_tls(std::shared_ptr<asio::ssl::context> context, bool insecure);

    // Resolves and connects, then sends the CONNECT frame. The outcome is reported.
    void connect(const std::string& host, std::uint16_t port, const std::string& connect_frame);
    void send_frame(std::string_view frame);
    // Frames already encoded, delimiters included. Takes them: `frames` is left empty (with
    // a buffer to reuse).
    void send_encoded(std::string& frames);
    // Sends DISCONNECT after what is queued. With a `close_wait`, reads on until the server
    // closes (it writes the error frames it owes first), at most that long from this call; then
    // on_closed(requested: the DISCONNECT was written). Without one, closes once it is written.
    void disconnect(std::chrono::steady_clock::duration close_wait = {});
    // Closes at once without DISCONNECT; nothing more is reported.
    void abort();
    // Stops reporting: the listener may go away. Pending operations end on their own.
    void detach() { listener_ = nullptr; }

    // Frames queued and not yet in a write; they were never sent. Empties the queue.
    std::string take_unsent();
    // Gives back the send buffers' memory beyond 1 MiB when they are empty.
    void trim() {
        if (!write_in_flight_) {
            release_if_large(writing_);
        }
        release_if_large(pending_);
    }
    std::uint64_t bytes_queued() const { return queued_total_; }
    std::uint64_t bytes_written() const { return written_total_; }
    std::size_t unsent_bytes() const { return pending_.size() + writing_.size(); }

    bool connecting() const { return state_ == State::connecting; }
    bool connected() const { return state_ == State::connected; }
    bool idle() const { return state_ == State::idle; }
    // A write is under way: frames given now are copied behind the ones waiting for it.
    bool writing() const { return write_in_flight_; }

  private:
    enum class State { idle, connecting, connected, closing };
    using TlsStream = asio::ssl::stream<asio::ip::tcp::socket&>;

    void on_tcp_connected(const std::string& host, std::uint16_t port,
                          const std::string& connect_frame);
    void send_connect(const std::string& connect_frame);
    void start_reading();
    void handle_frame(std::string_view frame);
    void flush();
    void disconnect_written();
    // The DISCONNECT is written: whatever ends the connection now, the client asked for it.
    bool disconnect_out() const {
        return state_ == State::closing && written_total_ >= disconnect_end_;
    }
    void fail_connect(const std::error_code& error, std::string_view reason);
    void finish(bool requested, const std::error_code& error);

    Strand strand_;
    ConnectionListener* listener_;
    asio::ip::tcp::resolver resolver_;
    asio::ip::tcp::socket socket_;
    std::shared_ptr<asio::ssl::context> tls_context_;  // null: plain TCP
    bool tls_insecure_ = false;
    std::shared_ptr<TlsStream> tls_;
    State state_ = State::idle;
    FrameSplitter splitter_{64 * 1024 * 1024};
    ServerReplies replies_;
    std::string pending_;  // frames queued while a write is in flight
    std::string writing_;
    bool write_in_flight_ = false;
    std::uint64_t queued_total_ = 0;    // bytes ever queued
    std::uint64_t written_total_ = 0;   // bytes ever written
    std::uint64_t disconnect_end_ = 0;  // queued_total_ after the DISCONNECT
    // As big as pubsubx-bench's: a subscriber under load takes many frames per system call.
    std::vector<char> read_buffer_ = std::vector<char>(256 * 1024);
    std::chrono::steady_clock::duration close_wait_{};
    asio::steady_timer close_timer_;  // bounds the wait for the server's close
};

}  // namespace pubsubx::client
