#include "session.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/write.hpp>

#include "server.hpp"

namespace pubsubx::server {

namespace {
// A write buffer larger than this is given back once drained even when more follows.
constexpr std::size_t kIdleWriteCapacity = 16 * 1024;
}  // namespace

Session::Session(Socket socket, Server& server)
    : socket_(std::move(socket)),
      server_(server),
      splitter_(server.max_frame()),
      deadline_start_(Clock::now()) {
    server_.add_session(*this);
}

Session::~Session() {
    if (listed_) {
        server_.remove_session(*this);
    }
}

void Session::start() {
    std::error_code ignored;
    socket_.set_option(asio::ip::tcp::no_delay(true), ignored);
    enable_keepalive();
    // Reads happen only after readiness, straight into the server's shared buffer.
    socket_.non_blocking(true, ignored);
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
    socket_.async_wait(
        Socket::wait_read,
        [self = shared_from_this()](const std::error_code& error) { self->on_readable(error); });
}

void Session::on_readable(const std::error_code& error) {
    if (closed_ || closing_) {
        return;
    }
    if (error) {
        lose(error.message());
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
    handle_bytes({buffer.data(), count});
    if (!closed_ && !closing_) {
        wait_readable();
    }
}

void Session::handle_bytes(std::string_view bytes) {
    const TimePoint now = Clock::now();
    Broker& broker = server_.broker();
    const auto status = splitter_.feed(bytes, [&](std::string_view frame) {
        const FrameResult result = broker.handle_frame(*this, frame, now);
        if (result.next == FrameResult::Next::close) {
            if (result.close_delay > Clock::duration::zero()) {
                close_after_delay(result.error_frame, result.close_delay);
            } else {
                close_after_flush(result.error_frame);
            }
            return false;
        }
        // The core may have closed this very connection (a slow consumer publishing).
        return !closed_;
    });
    if (status == FrameSplitter::Status::frame_too_long) {
        ++server_.stats().frames_too_long;
        const std::string name = client() != nullptr ? client()->name() : std::string{"(pending)"};
        server_.logger().error("Closing client '", name, "': a frame exceeds ", server_.max_frame(),
                               " bytes");
        // The client keeps what it had queued, as after any abrupt end of a connection.
        broker.connection_closed(*this, now);
        server_.schedule_expiry();
        close_after_flush("ERROR: Frame too long (the limit is " +
                          std::to_string(server_.max_frame()) + " bytes)");
        return;
    }
    splitter_.release_memory_if_empty();
}

void Session::outbound_ready() {
    if (write_in_flight_ || flush_posted_ || closed_) {
        return;
    }
    // Posted, not written now: everything delivered while the current read is processed
    // then goes out in one write.
    flush_posted_ = true;
    asio::post(socket_.get_executor(), [self = shared_from_this()] {
        self->flush_posted_ = false;
        self->flush();
    });
}

void Session::flush() {
    if (write_in_flight_ || closed_) {
        return;
    }
    server_.broker().take_outbound(*this, writing_);
    if (closing_frame_ != nullptr) {
        writing_.append(*closing_frame_);
        closing_frame_.reset();
    }
    if (writing_.empty()) {
        if (closing_) {
            std::error_code ignored;
            socket_.shutdown(Socket::shutdown_send, ignored);
            close_socket();
        }
        return;
    }
    write_in_flight_ = true;
    deadline_start_ = Clock::now();
    asio::async_write(
        socket_, asio::buffer(writing_),
        [self = shared_from_this()](const std::error_code& error, std::size_t written) {
            self->on_written(error, written);
        });
}

void Session::on_written(const std::error_code& error, std::size_t written) {
    write_in_flight_ = false;
    if (error) {
        // Every frame whose delimiter did not get out whole, even by a byte, was not received.
        const std::string_view all{writing_};
        const std::size_t from =
            written >= kDelimiter.size() - 1 ? written - (kDelimiter.size() - 1) : 0;
        std::size_t frames = 0;
        for (std::size_t at = find_delimiter(all, from); at != std::string_view::npos;
             at = find_delimiter(all, at + kDelimiter.size())) {
            ++frames;
        }
        server_.stats().frames_unsent_at_close += frames;
    }
    if (closed_) {
        return;
    }
    if (error) {
        lose(error.message());
        return;
    }
    writing_.clear();
    flush();
    if (!write_in_flight_ && (writing_.capacity() > kIdleWriteCapacity || client() == nullptr ||
                              client()->outbound().empty())) {
        // Going idle: an idle connection should hold no buffer (see docs/performance.md).
        std::string{}.swap(writing_);
        if (client() != nullptr) {
            client()->outbound().release_all_memory_if_empty();
        }
    }
}

void Session::close_after_flush(std::string_view error_frame) {
    closing_ = true;
    if (!error_frame.empty()) {
        closing_frame_ = std::make_unique<std::string>();
        append_frame(*closing_frame_, error_frame);
    }
    flush();
}

void Session::close_after_delay(std::string_view error_frame, Clock::duration delay) {
    closing_ = true;  // reads no more; the connection waits only for the timer
    auto timer = std::make_shared<asio::steady_timer>(socket_.get_executor(), delay);
    timer->async_wait([self = shared_from_this(), timer, frame = std::string{error_frame}](
                          const std::error_code&) { self->close_after_flush(frame); });
}

void Session::close_requested(std::string_view reason) {
    server_.logger().verbose("Closing a connection: ", reason);
    close_socket();
}

void Session::check_deadlines(TimePoint now) {
    if (closed_) {
        return;
    }
    const ServerOptions& options = server_.options();
    const bool pending = client() == nullptr && !closing_;
    if (pending && options.connect_timeout > Clock::duration::zero() &&
        now - deadline_start_ >= options.connect_timeout) {
        ++server_.stats().connect_timeouts;
        server_.logger().error("Closing a connection that sent no valid CONNECT within ",
                               seconds_text(options.connect_timeout));
        close_after_flush("ERROR: No CONNECT <name> received within " +
                          seconds_text(options.connect_timeout));
        return;
    }
    if (write_in_flight_ && options.write_timeout > Clock::duration::zero() &&
        now - deadline_start_ >= options.write_timeout) {
        ++server_.stats().write_timeouts;
        const std::string name = client() != nullptr ? client()->name() : std::string{"(pending)"};
        server_.logger().error("Client '", name, "' stopped reading: a write is pending for ",
                               seconds_text(now - deadline_start_), "; closing its connection");
        lose("write timeout");
    }
}

void Session::lose(std::string_view why) {
    if (closed_) {
        return;
    }
    if (client() != nullptr) {
        server_.logger().verbose("Connection of client '", client()->name(), "' ended: ", why);
    }
    server_.broker().connection_closed(*this, Clock::now());
    server_.schedule_expiry();
    close_socket();
}

void Session::close_socket() {
    closed_ = true;
    std::error_code ignored;
    socket_.close(ignored);
}

}  // namespace pubsubx::server
