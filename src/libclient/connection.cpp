#include "connection.hpp"

#include <asio/connect.hpp>
#include <asio/ssl/context.hpp>
#include <asio/ssl/stream.hpp>
#include <asio/write.hpp>

#include "tls/client_context.hpp"

namespace pubsubx::client {

Connection::Connection(Strand strand, ConnectionListener& listener)
    : strand_(strand),
      listener_(&listener),
      resolver_(strand),
      socket_(strand),
      close_timer_(strand) {}

Connection::~Connection() = default;

void Connection::use_tls(std::shared_ptr<asio::ssl::context> context, bool insecure) {
    tls_context_ = std::move(context);
    tls_insecure_ = insecure;
}

void Connection::connect(const std::string& host, std::uint16_t port,
                         const std::string& connect_frame) {
    state_ = State::connecting;
    resolver_.async_resolve(
        host, std::to_string(port),
        [self = shared_from_this(), connect_frame, host, port](
            const std::error_code& error, asio::ip::tcp::resolver::results_type endpoints) {
            if (self->state_ != State::connecting) {
                return;
            }
            if (error) {
                self->fail_connect(error, error.message());
                return;
            }
            asio::async_connect(
                self->socket_, endpoints,
                [self, connect_frame, host, port](const std::error_code& connect_error,
                                                  const asio::ip::tcp::endpoint&) {
                    if (self->state_ != State::connecting) {
                        return;
                    }
                    if (connect_error) {
                        self->fail_connect(connect_error, connect_error.message());
                        return;
                    }
                    self->on_tcp_connected(host, port, connect_frame);
                });
        });
}

void Connection::fail_connect(const std::error_code& error, std::string_view reason) {
    abort();
    if (listener_ != nullptr) {
        listener_->on_connect_failed(error, reason);
    }
}

void Connection::on_tcp_connected(const std::string& host, std::uint16_t port,
                                  const std::string& connect_frame) {
    std::error_code ignored;
    socket_.set_option(asio::ip::tcp::no_delay(true), ignored);
    if (tls_context_ == nullptr) {
        send_connect(connect_frame);
        return;
    }
    tls_ = std::make_shared<TlsStream>(socket_, *tls_context_);
    tls::prepare_client_connection(tls_->native_handle(), host, tls_insecure_);
    tls_->async_handshake(
        asio::ssl::stream_base::client,
        [self = shared_from_this(), connect_frame, host, port](const std::error_code& error) {
            if (self->state_ != State::connecting) {
                return;
            }
            if (error) {
                const std::string reason =
                    tls::describe_handshake_failure(self->tls_->native_handle(), error);
                self->fail_connect(error, "TLS handshake with " + host + ":" +
                                              std::to_string(port) + " failed: " + reason);
                return;
            }
            self->send_connect(connect_frame);
        });
}

void Connection::send_connect(const std::string& connect_frame) {
    replies_.expect_connect_answer();
    // Frames queued before the CONNECT (none today) would go out before it: the CONNECT is
    // always first on the wire.
    std::string queued = std::move(pending_);
    pending_.clear();
    send_frame(connect_frame);
    pending_.append(queued);
    start_reading();
}

void Connection::start_reading() {
    const auto on_read = [self = shared_from_this()](const std::error_code& error,
                                                     std::size_t count) {
        if (self->state_ == State::idle) {
            return;
        }
        if (error) {
            self->finish(self->disconnect_out(), error);
            return;
        }
        // A listener may abort from within a frame: the rest of this read is then stale.
        const auto status =
            self->splitter_.feed({self->read_buffer_.data(), count}, [&](std::string_view frame) {
                self->handle_frame(frame);
                return self->state_ != State::idle;
            });
        if (self->state_ == State::idle) {
            return;
        }
        if (status == FrameSplitter::Status::frame_too_long) {
            self->finish(false, make_error_code(client_errc::frame_too_long));
            return;
        }
        if (self->listener_ != nullptr) {
            self->listener_->on_read_done();
        }
        if (self->state_ != State::idle) {
            self->start_reading();
        }
    };
    if (tls_ != nullptr) {
        tls_->async_read_some(asio::buffer(read_buffer_), on_read);
    } else {
        socket_.async_read_some(asio::buffer(read_buffer_), on_read);
    }
}

void Connection::handle_frame(std::string_view frame) {
    if (listener_ == nullptr) {
        return;
    }
    const ServerReplies::Reply reply = replies_.read(frame);
    switch (reply.kind) {
        case ServerReplies::Kind::accepted:
            state_ = State::connected;
            listener_->on_accepted();
            return;
        case ServerReplies::Kind::restored:
            state_ = State::connected;
            listener_->on_restored(split_topic_list(reply.text));
            return;
        case ServerReplies::Kind::refused:
            // The server closes after refusing. Idle before the listener hears of it, so that
            // it can go on at once.
            abort();
            listener_->on_refused(reply.text);
            return;
        case ServerReplies::Kind::message:
            listener_->on_message(reply.topic, reply.text);
            return;
        case ServerReplies::Kind::error:
            listener_->on_error(reply.text);
            return;
        case ServerReplies::Kind::nothing:
            return;
    }
}

void Connection::send_frame(std::string_view frame) {
    const std::size_t before = pending_.size();
    append_frame(pending_, frame);
    queued_total_ += pending_.size() - before;
    flush();
}

void Connection::send_encoded(std::string& frames) {
    queued_total_ += frames.size();
    if (pending_.empty()) {
        pending_.swap(frames);  // `frames` gets pending_'s empty buffer, with its capacity
    } else {
        pending_.append(frames);
    }
    frames.clear();
    flush();
}

std::string Connection::take_unsent() {
    std::string unsent = std::move(pending_);
    pending_.clear();
    queued_total_ -= unsent.size();
    return unsent;
}

void Connection::flush() {
    // Until the CONNECT is out, the frames after it wait (send_connect puts it first).
    if (write_in_flight_ || pending_.empty() || !socket_.is_open() ||
        (state_ == State::connecting && replies_.answered())) {
        return;
    }
    writing_.swap(pending_);
    pending_.clear();
    write_in_flight_ = true;
    const auto on_written = [self = shared_from_this()](const std::error_code& error,
                                                        std::size_t count) {
        self->write_in_flight_ = false;
        self->written_total_ += count;
        self->writing_.clear();
        if (self->state_ == State::idle) {
            return;
        }
        if (error) {
            self->finish(self->disconnect_out(), error);
            return;
        }
        if (self->listener_ != nullptr) {
            self->listener_->on_written(self->written_total_);
        }
        if (self->state_ == State::idle) {
            return;
        }
        if (!self->pending_.empty()) {
            self->flush();
        } else if (self->disconnect_out()) {
            self->disconnect_written();
        }
    };
    if (tls_ != nullptr) {
        asio::async_write(*tls_, asio::buffer(writing_), on_written);
    } else {
        asio::async_write(socket_, asio::buffer(writing_), on_written);
    }
}

void Connection::disconnect(std::chrono::steady_clock::duration close_wait) {
    if (state_ != State::connected) {
        return;
    }
    close_wait_ = close_wait;
    send_frame("DISCONNECT");
    disconnect_end_ = queued_total_;
    state_ = State::closing;
    if (close_wait_ <= std::chrono::steady_clock::duration::zero()) {
        return;  // ends once the DISCONNECT is written (on_written)
    }
    // Counted from now, not from when the DISCONNECT is out: a broker that reads nothing any
    // more must not hold the caller.
    close_timer_.expires_after(close_wait_);
    close_timer_.async_wait([self = shared_from_this()](const std::error_code& error) {
        if (!error && self->state_ == State::closing) {
            self->finish(self->disconnect_out(), self->disconnect_out()
                                                     ? std::error_code{}
                                                     : std::make_error_code(std::errc::timed_out));
        }
    });
}

// The DISCONNECT is written: the rest of the way is the broker's close (read on until it
// comes: the error frames it owes come first), or the timer.
void Connection::disconnect_written() {
    if (close_wait_ <= std::chrono::steady_clock::duration::zero()) {
        finish(true, {});
    }
}

void Connection::abort() {
    std::error_code ignored;
    resolver_.cancel();
    close_timer_.cancel();
    socket_.close(ignored);
    state_ = State::idle;  // pending_ stays for take_unsent()
}

void Connection::finish(bool requested, const std::error_code& error) {
    abort();
    if (listener_ != nullptr) {
        listener_->on_closed(requested, error);
    }
}

}  // namespace pubsubx::client
