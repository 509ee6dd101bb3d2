// One client connection: reads frames into the broker core and writes what the core queued for
// its client, with at most one write in flight that carries everything queued so far.
#pragma once

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "pubsubx/broker.hpp"
#include "pubsubx/protocol.hpp"

namespace pubsubx::tls {
class Connection;
}

namespace pubsubx::server {

class Server;

// How long a closing connection reads and discards what its peer still sends after our FIN.
inline constexpr auto kDrainTime = std::chrono::seconds{1};

// A socket bound to the io_context's own executor: 40 bytes smaller than one holding the
// polymorphic any_io_executor, which counts with 10,000 idle connections.
using Socket = asio::basic_stream_socket<asio::ip::tcp, asio::io_context::executor_type>;

class Session final : public std::enable_shared_from_this<Session>, public Connection {
  public:
    // A connection goes through these phases in order (some may be skipped); `deadline_`
    // is the deadline of the current one.
    enum class Phase : std::uint8_t {
        tls_handshake,     // TLS port: the handshake runs; deadline: as awaiting_connect
        awaiting_connect,  // no client yet; deadline: --connect-timeout from the accept
        awaiting_name,     // cluster mode: a CONNECT waits for the cluster to settle its name;
                           // reads nothing meanwhile; deadline: as awaiting_connect
        awaiting_login,    // --users: a CONNECT waits for the slow check of its password;
                           // reads nothing meanwhile; deadline: as awaiting_connect
        open,              // a client is attached; deadline: --write-timeout since the last
                           // progress of the write in flight, if one is
        closing,           // reads no more, writes what is left (an error frame); deadline: as open
        draining,          // sent FIN; reads and discards until the peer closes, so that unread
                           // input does not turn the close into a reset that loses the error
                           // frame; deadline: kDrainTime
        closed,
    };

    // `tls`: a connection on the TLS port, which starts with the handshake.
    Session(Socket socket, Server& server, std::unique_ptr<tls::Connection> tls = nullptr);
    ~Session();
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    void start();
    // Starts a write of everything queued for this connection, unless one is in flight.
    void flush();
    // The same, posted: everything delivered by the reads ready now goes out in one write.
    void request_flush();
    // The core detached this connection's client: close at once, without telling the core.
    void close_now(std::string_view reason);
    // The core detached this connection's client and owes it `error_frame`: written, then
    // closed.
    void close_with_error(std::string_view reason, std::string_view error_frame);
    // Closes the connection if it overran the deadline of its phase.
    void check_deadline(TimePoint now);
    Phase phase() const { return phase_; }
    // The server stops: a write in flight ends now (Broker::write_interrupted).
    void interrupt_write();
    // No write starts until the store has committed `change` (Server::may_write_after).
    void hold_writes_until(std::uint64_t change) { held_until_ = change; }
    // True once no hold remains (a write is then requested).
    bool release_hold_if_durable();

  private:
    friend class Server;  // links sessions into its list

    void enable_keepalive();
    void wait_readable();
    void on_readable(const std::error_code& error);
    void handle_bytes(std::string_view bytes);
    // One frame to the broker; false once the connection reads no more frames for now.
    bool handle_frame(std::string_view frame, TimePoint now, const SourceAddress& source,
                      FrameEnd end);
    bool stop_reading(const FrameResult& result, std::string_view frame,
                      const SourceAddress& source);
    void await_name(std::string_view connect_frame, const SourceAddress& source);
    void await_login(std::string_view connect_frame, const SourceAddress& source);
    // The cluster settled the name, or the password was checked: the CONNECT goes on, or is
    // refused with `error_frame`.
    void on_admission_settled(std::string_view connect_frame, std::string_view error_frame);
    void on_frame_too_long(TimePoint now);
    void close_waiting_connect(std::string_view waited_for, std::string_view error_text);
    void start_write();
    void on_written(const std::error_code& error, std::size_t written);
    // Stops reading, writes what is queued, then `owed_frames` (encoded) and `error_frame` (if
    // any), then closes.
    void close_after_flush(std::string_view error_frame, std::string_view owed_frames = {});
    void start_draining();
    void drain();
    // The peer is gone or broken: its client becomes lost and the socket is closed now.
    void lose(std::string_view why);
    void close_socket();
    void set_write_deadline(TimePoint now);
    // Where the connection comes from, asked of the socket (only a CONNECT needs it).
    SourceAddress peer_source() const;
    std::size_t socket_unsent();
    // The write completed and nothing more is queued.
    void went_idle();
    void release_idle_buffers();

    // TLS (src/tls/): the same phases and frames; only the bytes go through OpenSSL.
    void continue_handshake();
    void wait_tls(Socket::wait_type wait, void (Session::*then)());
    // Logs "TLS handshake with <peer> <what>", counts and closes.
    void on_handshake_failed(std::string_view what);
    void read_tls();
    void write_tls();
    // --tls-name-from-cert: a CONNECT's name must be in the client certificate; false when
    // the frame is refused (and the connection closing).
    bool admit_tls_name(std::string_view frame);

    Socket socket_;
    Server& server_;
    FrameSplitter splitter_;
    std::string writing_;  // the bytes of the write in flight
    // What only some sessions hold at times, behind one pointer: an idle session's size counts
    // (docs/performance.md).
    struct Rare {
        // The frames that go out after everything queued when closing.
        std::optional<std::string> closing_frame;
        // The write's large frames, placed among writing_'s bytes and kept alive until it
        // completes, and the buffers that gather both (plain connections only).
        SharedFrames shared;
        std::vector<asio::const_buffer> gather;
    };
    // The completion condition of a write, called after every partial write: the write
    // deadline runs from the last progress, so a slow but live reader of a large backlog is
    // not cut off.
    struct WriteProgress {
        Session* session;
        std::size_t operator()(const std::error_code& error, std::size_t) const;
    };
    Rare& rare();
    std::size_t write_size() const;
    // writing_ with the shared frames copied in (rare paths: a stop, an error, TLS).
    std::string_view flatten_writing();
    void release_shared_frames();
    void start_gathered_write();
    std::unique_ptr<Rare> rare_;
    TimePoint deadline_;
    Session* previous_session_ = nullptr;
    Session* next_session_ = nullptr;
    std::uint64_t held_until_ = 0;  // a store change the next write waits for; 0: none
    // Null on the plain port. The one-byte fields below share a word: the pointer took the
    // padding that was there, so a plain session is no larger than before TLS (200 bytes).
    std::unique_ptr<tls::Connection> tls_;
    Phase phase_ = Phase::awaiting_connect;
    bool write_in_flight_ = false;
    bool flush_posted_ = false;
    bool listed_ = false;               // in the server's list (the server may be destroyed first)
    bool keeps_large_buffers_ = false;  // went idle holding large buffers (went_idle)
};

}  // namespace pubsubx::server
