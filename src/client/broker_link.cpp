#include "broker_link.hpp"

#include <asio/connect.hpp>
#include <asio/ssl/context.hpp>
#include <asio/ssl/stream.hpp>
#include <asio/write.hpp>

#include "tls/client_context.hpp"

namespace pubsubx::client {

BrokerLink::BrokerLink(Strand strand, LinkListener& listener)
    : strand_(strand),
      listener_(listener),
      resolver_(strand),
      socket_(strand),
      close_timer_(strand) {}

BrokerLink::~BrokerLink() = default;

void BrokerLink::use_tls(std::shared_ptr<asio::ssl::context> context, bool insecure) {
    tls_context_ = std::move(context);
    tls_insecure_ = insecure;
}

void BrokerLink::connect(const std::string& host, std::uint16_t port, const std::string& name,
                         const std::string& secret) {
    state_ = State::connecting;
    const std::string connect_frame = "CONNECT " + name + (secret.empty() ? "" : " " + secret);
    const std::uint64_t generation = ++generation_;
    resolver_.async_resolve(
        host, std::to_string(port),
        [this, generation, connect_frame, host, port](
            const std::error_code& error, asio::ip::tcp::resolver::results_type endpoints) {
            if (generation != generation_) {
                return;
            }
            if (error) {
                state_ = State::idle;
                listener_.on_connect_failed(error.message());
                return;
            }
            asio::async_connect(
                socket_, endpoints,
                [this, generation, connect_frame, host, port](const std::error_code& connect_error,
                                                              const asio::ip::tcp::endpoint&) {
                    if (generation != generation_) {
                        return;
                    }
                    if (connect_error) {
                        state_ = State::idle;
                        std::error_code ignored;
                        socket_.close(ignored);
                        listener_.on_connect_failed(connect_error.message());
                        return;
                    }
                    on_connected(host, port, connect_frame);
                });
        });
}

void BrokerLink::on_connected(const std::string& host, std::uint16_t port,
                              const std::string& connect_frame) {
    std::error_code ignored;
    socket_.set_option(asio::ip::tcp::no_delay(true), ignored);
    if (tls_context_ == nullptr) {
        send_connect(connect_frame);
        return;
    }
    tls_ = std::make_shared<TlsStream>(socket_, *tls_context_);
    tls::prepare_client_connection(tls_->native_handle(), host, tls_insecure_);
    const std::uint64_t generation = generation_;
    tls_->async_handshake(
        asio::ssl::stream_base::client,
        [this, generation, connect_frame, host, port, stream = tls_](const std::error_code& error) {
            if (generation != generation_) {
                return;
            }
            if (error) {
                const std::string reason =
                    tls::describe_handshake_failure(stream->native_handle(), error);
                state_ = State::idle;
                std::error_code ignored;
                socket_.close(ignored);
                listener_.on_connect_failed("TLS handshake with " + host + ":" +
                                            std::to_string(port) + " failed: " + reason);
                return;
            }
            send_connect(connect_frame);
        });
}

void BrokerLink::send_connect(const std::string& connect_frame) {
    splitter_ = FrameSplitter{64 * 1024 * 1024};
    awaiting_reply_ = true;
    awaiting_topic_list_ = false;
    send_frame(connect_frame);
    start_reading();
}

void BrokerLink::start_reading() {
    const std::uint64_t generation = generation_;
    const auto on_read = [this, generation, stream = tls_](const std::error_code& error,
                                                           std::size_t count) {
        if (generation != generation_ || state_ == State::idle) {
            return;
        }
        if (error) {
            finish(state_ == State::closing);
            return;
        }
        // A listener may abort or start a new connection from
        // within a frame: the rest of this read is then stale.
        splitter_.feed({read_buffer_.data(), count}, [&](std::string_view frame) {
            handle_frame(frame);
            return generation == generation_;
        });
        if (state_ == State::idle || generation != generation_) {
            return;
        }
        listener_.on_read_done();
        start_reading();
    };
    if (tls_ != nullptr) {
        tls_->async_read_some(asio::buffer(read_buffer_), on_read);
    } else {
        socket_.async_read_some(asio::buffer(read_buffer_), on_read);
    }
}

void BrokerLink::handle_frame(std::string_view frame) {
    if (awaiting_topic_list_) {
        awaiting_topic_list_ = false;
        std::vector<std::string> topics;
        std::size_t start = 0;
        while (start < frame.size()) {
            std::size_t end = frame.find(' ', start);
            end = end == std::string_view::npos ? frame.size() : end;
            if (end > start) {
                topics.emplace_back(frame.substr(start, end - start));
            }
            start = end + 1;
        }
        listener_.on_restored(std::move(topics));
        return;
    }
    if (frame.empty()) {
        return;
    }
    const ServerFrame parsed = parse_server_frame(frame);
    if (awaiting_reply_) {
        awaiting_reply_ = false;
        switch (parsed.kind) {
            case ServerFrameKind::accepted:
                state_ = State::connected;
                listener_.on_accepted();
                return;
            case ServerFrameKind::restored:
                state_ = State::connected;
                awaiting_topic_list_ = true;
                return;
            case ServerFrameKind::error:
            case ServerFrameKind::message:
                // The server closes after refusing. Idle before the listener hears of it, so
                // that it can go on, with another CONNECT for instance.
                abort();
                listener_.on_refused(frame);
                return;
        }
    }
    switch (parsed.kind) {
        case ServerFrameKind::message:
            listener_.on_message(parsed.topic, parsed.text);
            return;
        case ServerFrameKind::error:
            listener_.on_error(frame);
            return;
        case ServerFrameKind::accepted:
        case ServerFrameKind::restored:
            return;  // not an answer to anything we sent now
    }
}

void BrokerLink::send_frame(std::string_view frame) {
    append_frame(pending_, frame);
    flush();
}

void BrokerLink::send_message(std::string_view topic, std::string_view data) {
    pending_.append("PUBLISH ");
    append_message_frame(pending_, topic, data);
    flush();
}

void BrokerLink::flush() {
    if (write_in_flight_ || pending_.empty() || !socket_.is_open()) {
        return;
    }
    writing_.swap(pending_);
    pending_.clear();
    write_in_flight_ = true;
    const std::uint64_t generation = generation_;
    const auto on_written = [this, generation, stream = tls_](const std::error_code& error,
                                                              std::size_t) {
        write_in_flight_ = false;
        writing_.clear();
        if (generation != generation_ || state_ == State::idle) {
            // A write of an aborted connection ended: frames queued since for
            // a new connection waited on it and go out now.
            flush();
            return;
        }
        if (error) {
            finish(state_ == State::closing);
            return;
        }
        if (!pending_.empty()) {
            flush();
        } else if (state_ == State::closing) {
            disconnect_written();
        }
    };
    if (tls_ != nullptr) {
        asio::async_write(*tls_, asio::buffer(writing_), on_written);
    } else {
        asio::async_write(socket_, asio::buffer(writing_), on_written);
    }
}

void BrokerLink::disconnect(std::chrono::steady_clock::duration close_wait) {
    if (state_ != State::connected) {
        return;
    }
    send_frame("DISCONNECT");
    state_ = State::closing;
    close_wait_ = close_wait;
}

// Reading goes on while closing: the server's close ends it, through finish(true).
void BrokerLink::disconnect_written() {
    if (close_wait_ <= std::chrono::steady_clock::duration::zero()) {
        finish(true);
        return;
    }
    const std::uint64_t generation = generation_;
    close_timer_.expires_after(close_wait_);
    close_timer_.async_wait([this, generation](const std::error_code& error) {
        if (!error && generation == generation_ && state_ == State::closing) {
            finish(true);
        }
    });
}

void BrokerLink::abort() {
    ++generation_;
    resolver_.cancel();
    close_timer_.cancel();
    std::error_code ignored;
    socket_.close(ignored);
    tls_.reset();  // pending operations hold it until their handlers have run
    pending_.clear();
    if (!write_in_flight_) {
        writing_.clear();
    }
    state_ = State::idle;
}

void BrokerLink::finish(bool requested) {
    abort();
    listener_.on_closed(requested);
}

}  // namespace pubsubx::client
