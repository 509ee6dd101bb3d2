// One client connection to a PubSubX broker, owned by a strand: connects, writes frames with
// at most one write in flight, reads and splits the server's frames and reports them.
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
#include <vector>

#include "pubsubx/protocol.hpp"

namespace asio::ssl {
class context;
template <typename Stream>
class stream;
}  // namespace asio::ssl

namespace pubsubx::client {

using Strand = asio::strand<asio::any_io_executor>;

// What the link reports; every call is made on the link's strand.
class LinkListener {
  public:
    virtual void on_accepted() = 0;
    virtual void on_restored(std::vector<std::string> topics) = 0;
    // The server refused the CONNECT with an error frame (`ERROR: Name already taken`).
    virtual void on_refused(std::string_view error_frame) = 0;
    virtual void on_message(std::string_view topic, std::string_view data) = 0;
    // The server refused one of our frames on a live connection, which stays open (`ERROR:
    // Wildcards are not allowed in a PUBLISH topic`). A message whose topic is `ERROR:` arrives
    // here too: the protocol cannot tell the two apart (docs/protocol.md).
    virtual void on_error(std::string_view error_frame) = 0;
    // All frames of one read were reported (a good moment to flush output).
    virtual void on_read_done() {}
    // The TCP connection could not be made.
    virtual void on_connect_failed(std::string_view reason) = 0;
    // The connection ended: `requested` when we closed it after DISCONNECT.
    virtual void on_closed(bool requested) = 0;

  protected:
    ~LinkListener() = default;
};

class BrokerLink {
  public:
    BrokerLink(Strand strand, LinkListener& listener);
    ~BrokerLink();

    // TLS for the connections made from now on (pubsubx-client --tls): the server's
    // certificate and host name are checked unless `insecure`.
    void use_tls(std::shared_ptr<asio::ssl::context> context, bool insecure);

    // Resolves and connects, then sends CONNECT <name> (with the session-resume secret when
    // one is given). The outcome is reported.
    void connect(const std::string& host, std::uint16_t port, const std::string& name,
                 const std::string& secret = {});
    void send_frame(std::string_view frame);
    void send_message(std::string_view topic, std::string_view data);
    // Sends DISCONNECT, then closes once everything queued is written; on_closed(true). With a
    // `close_wait`, it first reads on until the server closes the connection, at most that long
    // after the DISCONNECT is written: the protocol has no acks, but the server writes the error
    // frames it owes us before it closes, so this is how a refusal of our last frames is heard.
    // The bound is for a server that never closes.
    void disconnect(std::chrono::steady_clock::duration close_wait = {});
    // Closes at once without DISCONNECT (the broker then keeps us as a lost client).
    void abort();

    bool connecting() const { return state_ == State::connecting; }
    bool connected() const { return state_ == State::connected; }
    bool idle() const { return state_ == State::idle; }

  private:
    enum class State { idle, connecting, connected, closing };
    using TlsStream = asio::ssl::stream<asio::ip::tcp::socket&>;

    // The TCP connection is made: the TLS handshake, if any, then CONNECT.
    void on_connected(const std::string& host, std::uint16_t port, const std::string& frame);
    void send_connect(const std::string& connect_frame);
    void start_reading();
    void handle_frame(std::string_view frame);
    void flush();
    void disconnect_written();
    void finish(bool requested);

    Strand strand_;
    LinkListener& listener_;
    asio::ip::tcp::resolver resolver_;
    asio::ip::tcp::socket socket_;
    std::shared_ptr<asio::ssl::context> tls_context_;  // null: plain TCP
    bool tls_insecure_ = false;
    // The connection's TLS layer over socket_; its handlers hold it too, so an aborted
    // connection's operations end on a live object.
    std::shared_ptr<TlsStream> tls_;
    State state_ = State::idle;
    std::uint64_t generation_ = 0;  // handlers of an earlier connection ignore their results
    FrameSplitter splitter_{64 * 1024 * 1024};
    bool awaiting_topic_list_ = false;
    bool awaiting_reply_ = false;
    std::string pending_;  // frames queued while a write is in flight
    std::string writing_;
    bool write_in_flight_ = false;
    std::array<char, 64 * 1024> read_buffer_{};
    std::chrono::steady_clock::duration close_wait_{};
    asio::steady_timer close_timer_;  // bounds the wait for the server's close
};

}  // namespace pubsubx::client
