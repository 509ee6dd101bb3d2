#include "broker_session.hpp"

#include <asio/detached.hpp>
#include <asio/post.hpp>
#include <limits>

namespace pubsubx::client {

namespace {
// The CLI sets no connect timeout of its own: a person gives up with Ctrl-C, and a script whose
// input has ended gives up after --answer-timeout (InteractiveClient's give-up timer).
constexpr std::chrono::hours kNoConnectTimeout{24 * 365};
}  // namespace

BrokerSession::BrokerSession(Strand strand, SessionListener& listener,
                             std::chrono::steady_clock::duration close_wait)
    : strand_(std::move(strand)),
      listener_(listener),
      close_wait_(std::chrono::ceil<std::chrono::milliseconds>(close_wait)) {}

ClientOptions BrokerSession::options_for(const std::string& host, std::uint16_t port,
                                         const std::string& name, const std::string& secret) const {
    ClientOptions options;
    options.host = host;
    options.port = port;
    options.name = name;
    options.secret = secret;
    options.tls = tls_;
    options.reconnect.enabled = false;
    // The broker's own words for a bad topic, in order with its answers to the frames before.
    options.check_topics = false;
    options.connect_timeout = kNoConnectTimeout;
    options.disconnect_wait = close_wait_;
    // As before the library: what `pub -l` reads from a big file waits in memory for a broker
    // that reads slowly, rather than being refused.
    options.max_unsent_bytes = std::numeric_limits<std::size_t>::max();
    return options;
}

// The client's handlers run on its strand, made on the runtime's strand: never beside the CLI's
// own handlers.
void BrokerSession::connect(const std::string& host, std::uint16_t port, const std::string& name,
                            const std::string& secret) {
    client_ = std::make_unique<Client>(strand_, options_for(host, port, name, secret));
    const std::uint64_t generation = ++generation_;
    client_->set_message_handler([this, generation](std::string_view topic, std::string_view data) {
        if (generation == generation_) {
            listener_.on_message(topic, data);
        }
    });
    client_->set_batch_handler([this, generation] {
        if (generation == generation_) {
            listener_.on_read_done();
        }
    });
    client_->set_event_handler([this, generation](const ClientEvent& event) {
        if (generation == generation_) {
            on_event(event);
        }
    });
    state_ = State::connecting;
    // A success is reported by the connected or restored event instead: that comes before the
    // messages the broker sends at once (a restored client's missed ones), this completion after.
    client_->async_connect([this, generation](std::error_code error, SessionInfo info) {
        if (error && generation == generation_) {
            on_connect_failed(error, info);
        }
    });
}

void BrokerSession::on_event(const ClientEvent& event) {
    switch (event.kind) {
        case ClientEventKind::connected:
            state_ = State::connected;
            listener_.on_accepted();
            return;
        case ClientEventKind::restored:
            state_ = State::connected;
            listener_.on_restored(event.topics);
            return;
        case ClientEventKind::refused:
            end();
            listener_.on_refused(event.text);
            return;
        case ClientEventKind::broker_error:
            listener_.on_error(event.text);
            return;
        case ClientEventKind::lost:
            end();
            listener_.on_closed(false);
            return;
        case ClientEventKind::resubscribed:
        case ClientEventKind::reconnecting:
        case ClientEventKind::closed:
            // No reconnection is made; a close is reported by the connect or disconnect
            // completion, or by the loss before it.
            return;
    }
}

void BrokerSession::on_connect_failed(const std::error_code& error, const SessionInfo& info) {
    end();
    if (error == client_errc::connection_lost) {
        listener_.on_closed(false);  // the server took the connection and shut it unanswered
    } else {
        listener_.on_connect_failed(info.reason);
    }
}

void BrokerSession::publish(std::string_view topic, std::string_view data) {
    if (!connected()) {
        return;
    }
    // The library refuses only what no frame can carry (data with the delimiter) or what waits
    // beyond its send buffer; the broker judges the topic.
    if (const std::error_code error = client_->publish(topic, data)) {
        listener_.on_error("ERROR: Cannot publish: " + error.message());
    }
}

void BrokerSession::subscribe(std::string filter) {
    if (connected()) {
        client_->async_subscribe(std::move(filter), asio::detached);
    }
}

void BrokerSession::unsubscribe(std::string filter) {
    if (connected()) {
        client_->async_unsubscribe(std::move(filter), asio::detached);
    }
}

void BrokerSession::disconnect() {
    if (!connected()) {
        return;
    }
    state_ = State::closing;
    // As before the library: everything typed or piped is written first, however long that
    // takes (`pub -l` of a big file to a slow broker), and --answer-timeout counts from there.
    client_->async_flush([this, generation = generation_](std::error_code) {
        if (generation != generation_) {
            return;
        }
        client_->async_disconnect([this, generation](std::error_code) {
            if (generation == generation_) {
                end();
                listener_.on_closed(true);
            }
        });
    });
}

void BrokerSession::abort() {
    if (idle()) {
        return;
    }
    client_->abort();
    end();
}

void BrokerSession::end() {
    state_ = State::idle;
    ++generation_;
    ended_.push_back(std::move(client_));
    asio::post(strand_, [this] { ended_.clear(); });
}

}  // namespace pubsubx::client
