#include "session.hpp"

#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <algorithm>
#include <asio/post.hpp>
#include <asio/write.hpp>
#include <span>

#include "server.hpp"
#include "tls/connection.hpp"

namespace pubsubx::server {

namespace {
// A write buffer larger than this is given back once drained even when more follows.
constexpr std::size_t kIdleWriteCapacity = 16 * 1024;
// Bytes per write system call, as Asio's transfer_all does it.
constexpr std::size_t kMaxWriteChunk = 64 * 1024;

TimePoint deadline_after(TimePoint now, Clock::duration timeout) {
    return timeout > Clock::duration::zero() ? now + timeout : TimePoint::max();
}

// "127.0.0.1:40312", for the log lines of TLS connections, which may have no client name.
std::string peer_text(const Socket& socket) {
    std::error_code error;
    const asio::ip::tcp::endpoint peer = socket.remote_endpoint(error);
    return error ? std::string{"(a closed connection)"} : endpoint_text(peer);
}
}  // namespace

Session::Session(Socket socket, Server& server, std::unique_ptr<tls::Connection> tls)
    : socket_(std::move(socket)),
      server_(server),
      splitter_(std::min(server.max_frame(), kMaxFrameBeforeConnect)),
      // The handshake counts toward the connect deadline: one deadline from the accept.
      deadline_(deadline_after(Clock::now(), server.options().connect_timeout)),
      tls_(std::move(tls)) {
    if (tls_ != nullptr) {
        phase_ = Phase::tls_handshake;
    }
    server_.add_session(*this);
}

Session::~Session() {
    if (listed_) {
        server_.remove_session(*this);
    }
}

SourceAddress Session::peer_source() const {
    std::error_code error;
    const asio::ip::address address = socket_.remote_endpoint(error).address();
    if (address.is_v4()) {
        return SourceAddress::ipv4(address.to_v4().to_uint());
    }
    SourceAddress source;
    const auto bytes = address.to_v6().to_bytes();
    std::copy(bytes.begin(), bytes.end(), source.bytes.begin());
    return source;
}

void Session::start() {
    std::error_code ignored;
    socket_.set_option(asio::ip::tcp::no_delay(true), ignored);
    enable_keepalive();
    // Reads happen only after readiness, straight into the server's shared buffer.
    socket_.non_blocking(true, ignored);
    if (tls_ != nullptr) {
        tls_->attach(socket_.native_handle());
        continue_handshake();
        return;
    }
    wait_readable();
}

// The kernel probes a connection that has been silent for the idle time, so a peer that
// vanished (power loss, a cut cable: no FIN, no RST) is found and its client becomes lost.
void Session::enable_keepalive() {
    const int idle = server_.options().keepalive_idle_seconds;
    if (idle <= 0) {
        return;
    }
    const int interval = std::max(1, idle / 3);
    const int probes = 3;
    std::error_code ignored;
    socket_.set_option(asio::socket_base::keep_alive(true), ignored);
    const int fd = socket_.native_handle();
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &probes, sizeof probes);
}

void Session::wait_readable() {
    // OpenSSL may hold input already read from the socket (a read stopped for a CONNECT that
    // waits for the cluster): the socket would not become readable for it.
    if (tls_ != nullptr && phase_ != Phase::draining && tls_->has_buffered_input()) [[unlikely]] {
        asio::post(socket_.get_executor(),
                   [self = shared_from_this()] { self->on_readable(std::error_code{}); });
        return;
    }
    socket_.async_wait(
        Socket::wait_read,
        [self = shared_from_this()](const std::error_code& error) { self->on_readable(error); });
}

void Session::on_readable(const std::error_code& error) {
    if (phase_ == Phase::draining) {
        drain();
        return;
    }
    if (phase_ != Phase::awaiting_connect && phase_ != Phase::open) {
        return;
    }
    if (error == asio::error::operation_aborted && server_.stopping_writes()) {
        return;  // interrupt_write cancels the wait for input too; the server is stopping
    }
    if (error) {
        lose(error.message());
        return;
    }
    if (tls_ != nullptr) [[unlikely]] {
        read_tls();
        return;
    }
    const std::span<char> buffer = server_.read_buffer();
    std::error_code read_error;
    const std::size_t count =
        socket_.read_some(asio::buffer(buffer.data(), buffer.size()), read_error);
    if (read_error == asio::error::would_block || read_error == asio::error::try_again) {
        wait_readable();
        return;
    }
    if (read_error) {
        lose(read_error == asio::error::eof ? "connection closed by peer" : read_error.message());
        return;
    }
    server_.stats().bytes_received += count;
    handle_bytes({buffer.data(), count});
    if (phase_ == Phase::awaiting_connect || phase_ == Phase::open) {
        wait_readable();
    }
}

// Inlined into the splitter's loop: it runs for every frame.
[[gnu::always_inline]] inline bool Session::handle_frame(std::string_view frame, TimePoint now,
                                                         const SourceAddress& source,
                                                         FrameEnd end) {
    if (tls_ != nullptr && phase_ == Phase::awaiting_connect) [[unlikely]] {
        if (!admit_tls_name(frame)) {
            return false;
        }
    }
    const FrameResult result = server_.broker().handle_frame(*this, frame, now, source, end);
    if (phase_ == Phase::awaiting_connect && client() != nullptr) [[unlikely]] {
        phase_ = Phase::open;
        deadline_ = TimePoint::max();
        splitter_.set_max_frame(server_.max_frame());
    }
    if (result.next != FrameResult::Next::read_more) [[unlikely]] {
        return stop_reading(result, frame, source);
    }
    return phase_ == Phase::awaiting_connect || phase_ == Phase::open;
}

// The broker asked to close, or to wait for the cluster to settle a CONNECT's name.
bool Session::stop_reading(const FrameResult& result, std::string_view frame,
                           const SourceAddress& source) {
    if (result.next == FrameResult::Next::close) {
        close_after_flush(result.error_frame, result.owed_frames);
    } else if (result.next == FrameResult::Next::await_login) {
        await_login(frame, source);
    } else {
        await_name(frame, source);
    }
    return false;
}

void Session::handle_bytes(std::string_view bytes) {
    const TimePoint now = Clock::now();
    const SourceAddress source =
        phase_ == Phase::awaiting_connect ? peer_source() : SourceAddress{};
    const auto status = splitter_.feed(bytes, [&](std::string_view frame) {
        return handle_frame(frame, now, source, FrameEnd::delimiter_follows);
    });
    if (status == FrameSplitter::Status::frame_too_long) {
        on_frame_too_long(now);
    }
    // Everything the read delivered goes out now, one write per touched connection.
    server_.apply_effects();
    splitter_.release_memory_if_empty();
}

// What the connection sent after its CONNECT stays in the splitter until the name is settled.
void Session::await_name(std::string_view connect_frame, const SourceAddress& source) {
    phase_ = Phase::awaiting_name;
    const Command command = parse_command(connect_frame);
    server_.name_gate()->settle_name(
        *this, std::string{command.argument}, std::string{command.data}, source,
        // The answer keeps the session alive: it waits for no socket operation meanwhile.
        // The CONNECT waits in the answer too: a session holds nothing more for cluster mode.
        [self = shared_from_this(), connect = std::string{connect_frame}](
            std::string_view error_frame) { self->on_admission_settled(connect, error_frame); });
}

void Session::await_login(std::string_view connect_frame, const SourceAddress& source) {
    phase_ = Phase::awaiting_login;
    const Command command = parse_command(connect_frame);
    server_.login_gate()->check_password(
        std::string{command.argument}, std::string{command.data}, source,
        [self = shared_from_this(), connect = std::string{connect_frame}](
            std::string_view error_frame) { self->on_admission_settled(connect, error_frame); });
}

void Session::on_admission_settled(std::string_view connect_frame, std::string_view error_frame) {
    if (phase_ != Phase::awaiting_name && phase_ != Phase::awaiting_login) {
        return;  // closed meanwhile (the connect deadline, say)
    }
    phase_ = Phase::awaiting_connect;
    if (!error_frame.empty()) {
        close_after_flush(error_frame);
        return;
    }
    const TimePoint now = Clock::now();
    const SourceAddress source = peer_source();
    if (handle_frame(connect_frame, now, source, FrameEnd::unknown)) {
        const auto status = splitter_.resume([&](std::string_view frame) {
            return handle_frame(frame, now, source, FrameEnd::delimiter_follows);
        });
        if (status == FrameSplitter::Status::frame_too_long) {
            on_frame_too_long(now);
        }
    }
    server_.apply_effects();
    if (phase_ == Phase::awaiting_connect || phase_ == Phase::open) {
        wait_readable();
    }
}

void Session::on_frame_too_long(TimePoint now) {
    ++server_.stats().frames_too_long;
    const bool pending = phase_ == Phase::awaiting_connect;
    const std::size_t limit =
        pending ? std::min(server_.max_frame(), kMaxFrameBeforeConnect) : server_.max_frame();
    const std::string name = client() != nullptr ? client()->name() : std::string{"(pending)"};
    server_.logger().error("Closing client '", name, "': a frame exceeds ", limit, " bytes",
                           pending ? " before CONNECT" : "");
    // The client keeps what it had queued, as after any abrupt end of a connection.
    server_.broker().connection_closed(*this, now);
    close_after_flush("ERROR: Frame too long (the limit is " + std::to_string(limit) + " bytes" +
                      (pending ? " before CONNECT)" : ")"));
}

void Session::flush() {
    if (write_in_flight_ || phase_ == Phase::draining || phase_ == Phase::closed) {
        return;
    }
    start_write();
}

// Measured (callgrind, 100,000 publishes to 10 subscribers): writing at once at the end of
// each read made 45 times as many writes as posting, and cost 20% more instructions.
void Session::request_flush() {
    if (write_in_flight_ || flush_posted_ || phase_ == Phase::closed) {
        return;
    }
    flush_posted_ = true;
    asio::post(socket_.get_executor(), [self = shared_from_this()] {
        self->flush_posted_ = false;
        self->flush();
    });
}

void Session::start_write() {
    if (server_.stopping_writes() || (held_until_ != 0 && !release_hold_if_durable())) {
        return;
    }
    SharedFrames shared;
    server_.broker().take_outbound(*this, writing_, shared);
    if (!shared.empty()) [[unlikely]] {
        rare().shared = std::move(shared);
    }
    if (rare_ != nullptr && rare_->closing_frame) [[unlikely]] {
        flatten_writing();  // the frames placed at the end would go after the closing frame
        writing_.append(*rare_->closing_frame);
        rare_->closing_frame.reset();
    }
    if (tls_ != nullptr) [[unlikely]] {
        flatten_writing();
    }
    if (writing_.empty() && (rare_ == nullptr || rare_->shared.empty())) {
        if (phase_ == Phase::closing) {
            start_draining();
        }
        return;
    }
    write_in_flight_ = true;
    set_write_deadline(Clock::now());
    if (tls_ != nullptr) [[unlikely]] {
        tls_->begin_write();
        write_tls();
        return;
    }
    if (rare_ != nullptr && !rare_->shared.empty()) [[unlikely]] {
        start_gathered_write();
        return;
    }
    asio::async_write(
        socket_, asio::buffer(writing_), WriteProgress{this},
        [self = shared_from_this()](const std::error_code& error, std::size_t written) {
            self->on_written(error, written);
        });
}

// The write's inline bytes and shared frames in order, as one buffer sequence: Asio sends up
// to 64 buffers per system call (writev), never copying the frames. The buffers live in rare_
// until the write completes; Asio keeps only a view of them (a span), not a copy.
void Session::start_gathered_write() {
    Rare& rare = *rare_;
    rare.gather.clear();
    rare.shared.for_each_piece(writing_, 0, [&](std::string_view piece) {
        rare.gather.emplace_back(piece.data(), piece.size());
    });
    asio::async_write(
        socket_, std::span<const asio::const_buffer>{rare.gather}, WriteProgress{this},
        [self = shared_from_this()](const std::error_code& error, std::size_t written) {
            self->on_written(error, written);
        });
}

std::size_t Session::WriteProgress::operator()(const std::error_code& error, std::size_t) const {
    // Stopping: a write between two steps ends here too (cancel() reaches only an operation
    // waiting in the reactor).
    if (error || session->server_.stopping_writes()) {
        return 0;
    }
    session->set_write_deadline(Clock::now());
    return kMaxWriteChunk;
}

Session::Rare& Session::rare() {
    if (rare_ == nullptr) {
        rare_ = std::make_unique<Rare>();
    }
    return *rare_;
}

std::size_t Session::write_size() const {
    return writing_.size() + (rare_ == nullptr ? 0 : rare_->shared.bytes);
}

std::string_view Session::flatten_writing() {
    if (rare_ != nullptr) {
        rare_->shared.merge_into(writing_);
    }
    return writing_;
}

// The references go as soon as the write is done: a frame's buffer lives only while some
// queue or write holds it.
void Session::release_shared_frames() {
    if (rare_ != nullptr) {
        rare_->shared.clear();
        rare_->gather.clear();
        if (!rare_->closing_frame) {
            rare_.reset();
        }
    }
}

void Session::set_write_deadline(TimePoint now) {
    deadline_ = deadline_after(now, server_.options().write_timeout);
}

void Session::on_written(const std::error_code& error, std::size_t written) {
    write_in_flight_ = false;
    server_.stats().bytes_sent += written;
    if (phase_ == Phase::open || phase_ == Phase::closing) {
        deadline_ = TimePoint::max();
    }
    if (server_.stopping_writes() &&
        (error == asio::error::operation_aborted || (!error && written < write_size()))) {
        // The server stops with a durable store: what did not go out is kept for the client.
        server_.broker().write_interrupted(*this, flatten_writing(), written);
        release_shared_frames();
        return;
    }
    if (error) {
        // Every frame whose delimiter did not get out whole, even by a byte, was not received.
        const std::string_view all = flatten_writing();
        const std::size_t from =
            written >= kDelimiter.size() - 1 ? written - (kDelimiter.size() - 1) : 0;
        std::size_t frames = 0;
        for (std::size_t at = find_delimiter(all, from); at != std::string_view::npos;
             at = find_delimiter(all, at + kDelimiter.size())) {
            ++frames;
        }
        server_.stats().frames_unsent_at_close += frames;
    }
    release_shared_frames();
    if (phase_ == Phase::closed || phase_ == Phase::draining) {
        return;
    }
    if (error) {
        lose(error.message());
        return;
    }
    server_.broker().write_completed(*this, Clock::now(), socket_unsent());
    writing_.clear();
    start_write();
    if (!write_in_flight_) {
        went_idle();
    }
    if (server_.broker().has_effects()) {
        server_.apply_effects();
    }
}

// An idle connection should hold no buffer (see docs/performance.md). Small buffers go at once.
// Large ones stay until the next deadline sweep: a connection that moves large batches goes
// idle between every two of them, and giving the buffers back each time cost the next batch a
// fresh allocation and page faults, measured in issue 16 at up to 9% of the broker's time.
void Session::went_idle() {
    if (writing_.capacity() > kIdleWriteCapacity) {
        keeps_large_buffers_ = true;
        return;
    }
    release_idle_buffers();
}

void Session::release_idle_buffers() {
    keeps_large_buffers_ = false;
    std::string{}.swap(writing_);
    if (tls_ != nullptr) [[unlikely]] {
        tls_->release_idle_memory();
    }
    server_.broker().release_idle_memory(*this);
}

// Only a client whose queue overflows needs this (one ioctl); others report 0.
std::size_t Session::socket_unsent() {
    int unsent = 0;
    if (client() == nullptr || !client()->in_overflow() ||
        ::ioctl(socket_.native_handle(), SIOCOUTQ, &unsent) != 0) {
        return 0;
    }
    return static_cast<std::size_t>(unsent);
}

void Session::close_after_flush(std::string_view error_frame, std::string_view owed_frames) {
    if (phase_ == Phase::closing || phase_ == Phase::draining || phase_ == Phase::closed) {
        return;
    }
    phase_ = Phase::closing;
    if (!write_in_flight_) {
        deadline_ = TimePoint::max();
    }
    if (!error_frame.empty() || !owed_frames.empty()) {
        std::string& closing_frame = rare().closing_frame.emplace(owed_frames);
        if (!error_frame.empty()) {
            append_frame(closing_frame, error_frame);
        }
    }
    flush();
}

void Session::start_draining() {
    if (tls_ != nullptr) {
        tls_->send_close_notify();
    }
    std::error_code ignored;
    socket_.shutdown(Socket::shutdown_send, ignored);
    phase_ = Phase::draining;
    deadline_ = Clock::now() + kDrainTime;
    wait_readable();
}

void Session::drain() {
    const std::span<char> buffer = server_.read_buffer();
    for (;;) {
        std::error_code error;
        // Discarded, but received all the same.
        server_.stats().bytes_received +=
            socket_.read_some(asio::buffer(buffer.data(), buffer.size()), error);
        if (error == asio::error::would_block || error == asio::error::try_again) {
            wait_readable();
            return;
        }
        if (error) {
            close_socket();  // the peer closed (or broke) its side: done
            return;
        }
    }
}

bool Session::release_hold_if_durable() {
    if (held_until_ == 0) {
        return true;
    }
    if (!server_.may_write_after(held_until_)) {
        return false;
    }
    held_until_ = 0;
    request_flush();
    return true;
}

void Session::interrupt_write() {
    if (write_in_flight_) {
        std::error_code ignored;
        socket_.cancel(ignored);
    }
}

void Session::close_now(std::string_view reason) {
    if (phase_ == Phase::closed) {
        return;
    }
    server_.logger().verbose("Closing a connection: ", reason);
    close_socket();
}

void Session::close_with_error(std::string_view reason, std::string_view error_frame) {
    server_.logger().verbose("Closing a connection: ", reason);
    close_after_flush(error_frame);
}

// A CONNECT waited longer than --connect-timeout for `waited_for` (the cluster's registry, a
// password check).
void Session::close_waiting_connect(std::string_view waited_for, std::string_view error_text) {
    ++server_.stats().connect_timeouts;
    const std::string timeout = seconds_text(server_.options().connect_timeout);
    server_.logger().error("Closing a connection whose CONNECT waited for ", waited_for,
                           " longer than ", timeout);
    close_after_flush("ERROR: " + std::string{error_text} + " within " + timeout + "; retry");
}

void Session::check_deadline(TimePoint now) {
    if (keeps_large_buffers_ && !write_in_flight_ && phase_ != Phase::closed) {
        release_idle_buffers();
    }
    if (phase_ == Phase::open && !write_in_flight_ && client() != nullptr &&
        client()->in_overflow()) {
        server_.broker().socket_drained(*this, now, socket_unsent());
    }
    if (now < deadline_) {
        return;
    }
    const ServerOptions& options = server_.options();
    switch (phase_) {
        case Phase::tls_handshake:
            ++server_.stats().tls_handshake_timeouts;
            on_handshake_failed("did not finish within " + seconds_text(options.connect_timeout) +
                                " (--connect-timeout)");
            break;
        case Phase::awaiting_name:
            close_waiting_connect("the cluster", "The cluster did not settle the name");
            break;
        case Phase::awaiting_login:
            close_waiting_connect("its password check", "The password check did not finish");
            break;
        case Phase::awaiting_connect:
            ++server_.stats().connect_timeouts;
            server_.logger().error("Closing a connection that sent no valid CONNECT within ",
                                   seconds_text(options.connect_timeout));
            close_after_flush("ERROR: No CONNECT <name> received within " +
                              seconds_text(options.connect_timeout));
            break;
        case Phase::open:
        case Phase::closing: {
            ++server_.stats().write_timeouts;
            const std::string name =
                client() != nullptr ? client()->name() : std::string{"(no client)"};
            server_.logger().error("Client '", name,
                                   "' stopped reading: its write made no progress for ",
                                   seconds_text(options.write_timeout), "; closing its connection");
            lose("write timeout");
            break;
        }
        case Phase::draining:
            close_socket();
            break;
        case Phase::closed:
            break;
    }
}

void Session::lose(std::string_view why) {
    if (phase_ == Phase::closed) {
        return;
    }
    if (client() != nullptr) {
        server_.logger().verbose("Connection of client '", client()->name(), "' ended: ", why);
    }
    server_.broker().connection_closed(*this, Clock::now());
    close_socket();
    server_.apply_effects();
}

void Session::close_socket() {
    phase_ = Phase::closed;
    deadline_ = TimePoint::max();
    std::error_code ignored;
    socket_.close(ignored);
}

// The session's TLS side. It keeps the plain path's shape: wait for the socket, then make the
// non-blocking OpenSSL call that wanted it; nothing here runs for a plain connection.
void Session::continue_handshake() {
    if (phase_ != Phase::tls_handshake) {
        return;  // closed meanwhile (the connect deadline, say)
    }
    switch (tls_->handshake()) {
        case tls::Io::done:
            ++server_.stats().tls_handshakes;
            phase_ = Phase::awaiting_connect;  // the connect deadline runs on
            server_.logger().verbose("TLS connection from ", peer_text(socket_), ": ",
                                     tls_->description());
            wait_readable();
            return;
        case tls::Io::want_read:
            wait_tls(Socket::wait_read, &Session::continue_handshake);
            return;
        case tls::Io::want_write:
            wait_tls(Socket::wait_write, &Session::continue_handshake);
            return;
        case tls::Io::closed:
        case tls::Io::failed:
            on_handshake_failed("failed: " + tls_->failure());
            return;
    }
}

// Readiness of the socket, then `then`; the session is closed meanwhile if the wait failed
// (then the write in flight, if any, ends with the error).
void Session::wait_tls(Socket::wait_type wait, void (Session::*then)()) {
    socket_.async_wait(wait, [self = shared_from_this(), then](const std::error_code& error) {
        if (!error) {
            ((*self).*then)();
        } else if (self->phase_ == Phase::tls_handshake) {
            self->on_handshake_failed("failed: " + error.message());
        } else if (self->write_in_flight_ && then == &Session::write_tls) {
            self->on_written(error, self->tls_->written);
        } else if (error != asio::error::operation_aborted) {
            self->lose(error.message());
        }
    });
}

// Nobody else is touched: the connection had no client yet.
void Session::on_handshake_failed(std::string_view what) {
    ++server_.stats().tls_handshakes_failed;
    server_.logger().error("TLS handshake with ", peer_text(socket_), " ", what);
    close_socket();
}

// Decrypts into the server's shared buffer (OpenSSL reads the socket itself, synchronously,
// so nothing outlives this call) and hands the frames on as the plain path does: one buffer's
// worth per turn, so that the writes it asked for go out before the next (measured: reading on
// until the socket was empty let 1x1 4 KiB queues grow to the whole window, and the memory
// they took and gave back each time cost the broker half its time in page faults).
void Session::read_tls() {
    // Reached from a wait for writability too, which nothing cancels: a connection that began
    // closing meanwhile reads no more frames.
    if (phase_ != Phase::awaiting_connect && phase_ != Phase::open) {
        return;
    }
    const std::span<char> buffer = server_.read_buffer();
    std::size_t filled = 0;
    const tls::Io io = tls_->read(buffer.data(), buffer.size(), filled);
    if (filled > 0) {
        server_.stats().bytes_received += filled;
        handle_bytes({buffer.data(), filled});
        if (phase_ != Phase::awaiting_connect && phase_ != Phase::open) {
            return;  // what OpenSSL still holds waits (wait_readable looks for it)
        }
    }
    switch (io) {
        case tls::Io::done:  // the buffer is full: OpenSSL may hold more (wait_readable posts)
        case tls::Io::want_read:
            wait_readable();
            return;
        case tls::Io::want_write:
            wait_tls(Socket::wait_write, &Session::read_tls);
            return;
        case tls::Io::closed:
            lose("connection closed by peer");
            return;
        case tls::Io::failed:
            server_.logger().error("TLS error on the connection from ", peer_text(socket_), ": ",
                                   tls_->failure());
            lose("TLS error: " + tls_->failure());
            return;
    }
}

// Writes `writing_` through OpenSSL, many records per system call (tls::Connection::write);
// the write deadline runs from the last time the socket took bytes. The completion is posted,
// as Asio's async_write posts its own, so a write never completes inside the call that started
// it.
void Session::write_tls() {
    if (!write_in_flight_) {
        return;
    }
    const auto complete = [this](std::error_code error) {
        asio::post(socket_.get_executor(), [self = shared_from_this(), error] {
            self->on_written(error, self->tls_->written);
        });
    };
    if (server_.stopping_writes()) {
        // At once, not posted: the store's close is posted already and must see what this
        // write did not send back in the client's queue.
        on_written(asio::error::operation_aborted, tls_->written);
        return;
    }
    bool progressed = false;
    const tls::Io io = tls_->write(writing_, progressed);
    if (progressed) {
        set_write_deadline(Clock::now());
    }
    switch (io) {
        case tls::Io::done:
            complete({});
            return;
        case tls::Io::want_write:
            wait_tls(Socket::wait_write, &Session::write_tls);
            return;
        case tls::Io::want_read:
            wait_tls(Socket::wait_read, &Session::write_tls);
            return;
        case tls::Io::closed:
        case tls::Io::failed:
            complete(asio::error::broken_pipe);
            return;
    }
}

bool Session::admit_tls_name(std::string_view frame) {
    if (!server_.tls_names_from_certificates()) {
        return true;
    }
    const Command command = parse_command(frame);
    if (command.kind != CommandKind::connect || !command.has_argument) {
        return true;
    }
    if (tls_->peer_certificate_names(command.argument)) {
        // With --users, the certificate is the user's login (docs/security.md).
        server_.broker().vouch_for_next_connect(*this);
        return true;
    }
    ++server_.stats().tls_names_refused;
    std::string name;
    append_escaped(name, command.argument);
    server_.logger().error("Refusing CONNECT '", Escaped{command.argument}, "' from ",
                           peer_text(socket_),
                           ": not a name in its client certificate (--tls-name-from-cert)");
    close_after_flush(std::string{kNotAuthorized} + ": the name '" + name +
                      "' is not in the client certificate");
    return false;
}

}  // namespace pubsubx::server
