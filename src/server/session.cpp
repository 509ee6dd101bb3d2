#include "session.hpp"

#include <asio/post.hpp>
#include <asio/write.hpp>

#include "server.hpp"

namespace pubsubx::server {

namespace {
// A write buffer larger than this is given back once drained even when more follows.
constexpr std::size_t kIdleWriteCapacity = 16 * 1024;
}  // namespace

Session::Session(asio::ip::tcp::socket socket, Server& server)
    : socket_(std::move(socket)), server_(server), splitter_(server.max_frame()) {}

void Session::start() {
    std::error_code ignored;
    socket_.set_option(asio::ip::tcp::no_delay(true), ignored);
    // Reads happen only after readiness, straight into the server's shared buffer.
    socket_.non_blocking(true, ignored);
    wait_readable();
}

void Session::wait_readable() {
    socket_.async_wait(
        asio::ip::tcp::socket::wait_read,
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
            close_after_flush(result.error_frame);
            return false;
        }
        return true;
    });
    if (status == FrameSplitter::Status::frame_too_long) {
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
    writing_.append(control_);
    control_.clear();
    if (writing_.empty()) {
        if (closing_) {
            std::error_code ignored;
            socket_.shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
            close_socket();
        }
        return;
    }
    write_in_flight_ = true;
    asio::async_write(socket_, asio::buffer(writing_),
                      [self = shared_from_this()](const std::error_code& error, std::size_t) {
                          self->on_written(error);
                      });
}

void Session::on_written(const std::error_code& error) {
    write_in_flight_ = false;
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
        append_frame(control_, error_frame);
    }
    flush();
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
