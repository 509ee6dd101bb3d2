// pubsubx::Client: the session's life across connections. One state at a time, changed in
// one place (enter): idle -> connecting -> connected <-> lost -> closing -> closed.
#include "pubsubx/client.hpp"

#include <algorithm>
#include <asio/dispatch.hpp>
#include <asio/post.hpp>
#include <asio/ssl/context.hpp>
#include <asio/steady_timer.hpp>
#include <atomic>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "backoff.hpp"
#include "connection.hpp"
#include "pubsubx/protocol.hpp"
#include "server_replies.hpp"
#include "tls/client_context.hpp"

namespace pubsubx {

using client::Connection;
using client::Strand;

namespace {

// A refusal during reconnection that may pass: our own half-open connection still holding the
// name (a client without a secret), a full server, and every answer that says to retry: the
// broker's back-off after failed logins (others' guesses from our address count too), a
// cluster moving the name or waiting for a node.
bool worth_retrying(client_errc refusal, std::string_view frame) {
    return refusal == client_errc::name_taken || refusal == client_errc::server_full ||
           refusal == client_errc::name_moving || frame.find("retry") != std::string_view::npos ||
           frame.find("try again") != std::string_view::npos;
}

std::error_code check_topic(std::string_view topic) {
    if (!is_valid_topic(topic) || has_wildcard_level(topic)) {
        return client_errc::invalid_topic;
    }
    return {};
}

// Not empty, no space and no delimiter: the frame keeps its fields.
bool is_one_field(std::string_view text) {
    return !text.empty() && text.find(' ') == std::string_view::npos &&
           find_delimiter(text) == std::string_view::npos;
}

std::error_code check_filter(std::string_view filter) {
    if (!is_valid_topic(filter) || topic_shape(filter).hash_not_last) {
        return client_errc::invalid_topic;
    }
    return {};
}

// The inbox's lock: held for one append, so a waiter spins rather than sleeps, and the release
// is a plain store (a mutex's unlock is a locked instruction and a check for sleepers, which
// cost a publish as much as the rest of its work).
class SpinLock {
  public:
    void lock() {
        while (locked_.exchange(true, std::memory_order_acquire)) {
            while (locked_.load(std::memory_order_relaxed)) {
                std::this_thread::yield();
            }
        }
    }
    void unlock() { locked_.store(false, std::memory_order_release); }

  private:
    std::atomic<bool> locked_{false};
};

// PUBLISH <topic> <data> and the delimiter. The growth is doubled here: the inbox is drained
// empty, and a reserve to the exact size on every append would copy it each time.
void append_publish_frame(std::string& out, std::string_view topic, std::string_view data) {
    constexpr std::string_view kPublish{"PUBLISH "};
    const std::size_t size = kPublish.size() + topic.size() + 1 + data.size() + kDelimiter.size();
    if (out.capacity() < out.size() + size) {
        out.reserve(std::max(out.size() + size, 2 * out.capacity()));
    }
    out.append(kPublish);
    append_message_frame(out, topic, data);
}

}  // namespace

class Client::Impl final : public std::enable_shared_from_this<Client::Impl>,
                           public client::ConnectionListener {
  public:
    Impl(Strand strand, ClientOptions options)
        : strand_(std::move(strand)),
          options_(std::move(options)),
          attempt_timer_(strand_),
          reconnect_timer_(strand_),
          trim_timer_(strand_),
          random_(std::random_device{}()) {}

    // ---- From any thread ----
    std::error_code publish_now(std::string_view topic, std::string_view data);
    ClientStats stats() const;
    const ClientOptions& options() const { return options_; }
    void detach() { detached_.store(true); }

    // ---- On the strand ----
    void set_handlers(MessageHandler* message, EventHandler* event, std::function<void()>* batch) {
        if (message != nullptr)
            message_handler_ = std::move(*message);
        if (event != nullptr)
            event_handler_ = std::move(*event);
        if (batch != nullptr)
            batch_handler_ = std::move(*batch);
    }
    void connect(detail::Connected done);
    std::error_code queue_subscription(std::string_view filter, bool subscribe);
    void complete_after_drain(detail::Done done, bool made_again);
    struct SubscriptionChange {
        std::string filter;
        bool subscribe;
    };
    void apply_subscriptions(std::vector<SubscriptionChange>& changes);
    void publish_queued(std::size_t frame_size, detail::Done done);
    void open_once() {
        if (!connect_called_.exchange(true)) {
            accepting_.store(true);  // publish() right after async_connect() is kept
        }
    }
    void disconnect(detail::Done done);
    void abort();

    // ConnectionListener
    void on_accepted() override;
    void on_restored(std::vector<std::string> topics) override;
    void on_refused(std::string_view frame) override;
    void on_message(std::string_view topic, std::string_view data) override;
    void on_error(std::string_view frame) override;
    void on_read_done() override;
    void on_written(std::uint64_t bytes) override;
    void on_connect_failed(const std::error_code& error, std::string_view reason) override;
    void on_closed(bool requested, const std::error_code& error) override;

  private:
    enum class State { idle, connecting, connected, lost, closing, closed };

    // A topic that is not one field would be read as other frames: always refused. Without
    // ClientOptions::check_topics the broker judges the rest. (Data with the delimiter is
    // refused too, in publish_now.)
    std::error_code topic_error(std::string_view topic) const;
    std::error_code filter_error(std::string_view filter) const {
        if (!is_one_field(filter)) {
            return client_errc::invalid_topic;
        }
        return options_.check_topics ? check_filter(filter) : std::error_code{};
    }

    void enter(State next, const std::error_code& why = {});
    bool session_open() const { return state_ == State::connected; }
    void start_attempt();
    void attempt_failed(const std::error_code& error, std::string_view reason);
    void schedule_reconnect();
    void session_back(bool restored, std::vector<std::string> topics);
    void reconcile_subscriptions(bool first, const std::set<std::string>& kept);
    void post_drain_once();
    void drain_posted();
    void drain_inbox();
    void keep_offline(std::string_view frames);
    void send_offline();
    void drop_offline();
    void close_connection();
    void drop_connection();
    std::uint64_t take_back_unsent();
    void complete_when_written(detail::Done done, bool made_again = false);
    void schedule_trim();
    void trim();
    void complete_writes(std::uint64_t written, bool lost);
    void finish_all(const std::error_code& error);
    void report(ClientEvent event);
    void publish_counters();

    Strand strand_;
    const ClientOptions options_;
    std::shared_ptr<asio::ssl::context> tls_context_;
    State state_ = State::idle;
    std::shared_ptr<Connection> connection_;
    asio::steady_timer attempt_timer_;    // connect_timeout of the attempt under way
    asio::steady_timer reconnect_timer_;  // the back-off before the next attempt
    asio::steady_timer trim_timer_;       // gives back buffers a burst left behind
    bool trim_armed_ = false;
    std::uint32_t attempt_ = 0;  // reconnection attempts since the back-off began
    std::chrono::steady_clock::time_point connected_at_{};  // the session's start
    std::mt19937 random_;

    MessageHandler message_handler_;
    EventHandler event_handler_;
    std::function<void()> batch_handler_;
    std::atomic<bool> detached_{false};  // the Client is gone: no handler runs any more

    std::set<std::string> subscriptions_;  // what we want, to make again after a loss
    // Undone while the first connection was made: not adopted from a RESTORED.
    std::set<std::string> undone_before_session_;
    detail::Connected connect_done_;
    detail::Done disconnect_done_;
    // async_publish/subscribe waiting for their frame to be written: the connection's byte
    // count at the end of the frame.
    struct WaitingWrite {
        std::uint64_t end;
        detail::Done done;
        bool made_again;  // a (un)subscription: made again after a loss whatever became of it
    };
    std::deque<WaitingWrite> waiting_writes_;

    // Publishes kept while no session is open, oldest first.
    std::deque<std::string> offline_;
    std::size_t offline_bytes_ = 0;
    std::string unsent_frames_;  // taken back from a connection that ended

    // publish() from any thread: frames wait here for the strand, which takes them all at once.
    SpinLock inbox_mutex_;
    std::string inbox_;
    std::string inbox_topic_;                              // the last topic that passed topic_error
    std::vector<SubscriptionChange> inbox_subscriptions_;  // with their frames, in order
    std::vector<SubscriptionChange> subscription_changes_;  // on the strand: the drained ones
    std::string spare_;  // on the strand: the inbox's next buffer
    std::uint64_t inbox_messages_ = 0;
    bool inbox_drain_posted_ = false;
    std::atomic<bool> accepting_{false};       // between async_connect and the close
    std::atomic<bool> connect_called_{false};  // a client connects once
    std::atomic<std::size_t> unsent_bytes_{0};

    // Counted on the strand, copied to the atomics after each read and event for stats().
    ClientStats counters_;
    std::atomic<std::uint64_t> messages_received_{0}, publishes_sent_{0}, publishes_buffered_{0},
        publishes_dropped_{0}, reconnects_{0}, broker_errors_{0};
    std::atomic<std::size_t> offline_bytes_now_{0};
};

// ---- From any thread ---------------------------------------------------------------------------

std::error_code Client::Impl::topic_error(std::string_view topic) const {
    if (!is_one_field(topic)) {
        return client_errc::invalid_topic;
    }
    return options_.check_topics ? check_topic(topic) : std::error_code{};
}

std::error_code Client::Impl::publish_now(std::string_view topic, std::string_view data) {
    if (find_delimiter(data) != std::string_view::npos) {
        return client_errc::invalid_message;
    }
    if (!accepting_.load(std::memory_order_relaxed)) {
        return client_errc::not_connected;
    }
    bool post_drain = false;
    {
        std::lock_guard lock{inbox_mutex_};
        // A publisher mostly repeats its topic: checked again only when it changes.
        if (inbox_topic_.empty() || topic != inbox_topic_) {  // never empty once set
            if (const std::error_code invalid = topic_error(topic)) {
                return invalid;
            }
            inbox_topic_.assign(topic);
        }
        if (inbox_.size() + unsent_bytes_.load(std::memory_order_relaxed) >
            options_.max_unsent_bytes) {
            return client_errc::buffer_full;
        }
        append_publish_frame(inbox_, topic, data);
        ++inbox_messages_;
        post_drain = !std::exchange(inbox_drain_posted_, true);
    }
    if (post_drain) {
        post_drain_once();
    }
    return {};
}

// The first frame into an empty inbox asks the strand for one drain; later ones ride on it.
void Client::Impl::post_drain_once() {
    asio::post(strand_, [self = shared_from_this()] { self->drain_posted(); });
}

ClientStats Client::Impl::stats() const {
    ClientStats stats;
    stats.messages_received = messages_received_.load();
    stats.publishes_sent = publishes_sent_.load();
    stats.publishes_buffered = publishes_buffered_.load();
    stats.publishes_dropped = publishes_dropped_.load();
    stats.reconnects = reconnects_.load();
    stats.broker_errors = broker_errors_.load();
    stats.offline_bytes = offline_bytes_now_.load();
    return stats;
}

void Client::Impl::publish_counters() {
    messages_received_.store(counters_.messages_received, std::memory_order_relaxed);
    publishes_sent_.store(counters_.publishes_sent, std::memory_order_relaxed);
    publishes_buffered_.store(counters_.publishes_buffered, std::memory_order_relaxed);
    publishes_dropped_.store(counters_.publishes_dropped, std::memory_order_relaxed);
    reconnects_.store(counters_.reconnects, std::memory_order_relaxed);
    broker_errors_.store(counters_.broker_errors, std::memory_order_relaxed);
    offline_bytes_now_.store(offline_bytes_, std::memory_order_relaxed);
    unsent_bytes_.store(connection_ != nullptr ? connection_->unsent_bytes() : 0,
                        std::memory_order_relaxed);
}

// ---- Operations, on the strand -----------------------------------------------------------------

void Client::Impl::connect(detail::Connected done) {
    if (state_ != State::idle) {
        if (state_ == State::closed) {
            accepting_.store(false);  // start_connect opened it again
        }
        done.complete(
            state_ == State::closed ? client_errc::closed : client_errc::already_connected, {});
        return;
    }
    // A space would split the CONNECT frame's fields differently: say so before connecting.
    if (!is_valid_name(options_.name) ||
        (!options_.secret.empty() && !is_valid_secret(options_.secret))) {
        SessionInfo info;
        info.reason = is_valid_name(options_.name) ? "invalid secret" : "invalid name";
        const client_errc error =
            is_valid_name(options_.name) ? client_errc::invalid_secret : client_errc::invalid_name;
        enter(State::closed, error);
        done.complete(error, std::move(info));
        return;
    }
    if (options_.tls.enabled) {
        std::string error;
        tls_context_ = tls::make_client_context({options_.tls.ca_file, options_.tls.certificate,
                                                 options_.tls.private_key, options_.tls.insecure},
                                                error);
        if (tls_context_ == nullptr) {
            SessionInfo info;
            info.reason = error;
            enter(State::closed, std::make_error_code(std::errc::invalid_argument));
            done.complete(std::make_error_code(std::errc::invalid_argument), std::move(info));
            return;
        }
    }
    connect_done_ = std::move(done);
    enter(State::connecting);
    start_attempt();
}

// SUBSCRIBE and UNSUBSCRIBE go through the inbox like publishes, so that one thread's
// publishes and subscriptions reach the broker in the order they were made.
std::error_code Client::Impl::queue_subscription(std::string_view filter, bool subscribe) {
    if (const std::error_code invalid = filter_error(filter)) {
        return invalid;
    }
    if (!accepting_.load(std::memory_order_relaxed)) {
        return client_errc::not_connected;
    }
    bool post_drain = false;
    {
        std::lock_guard lock{inbox_mutex_};
        inbox_.append(subscribe ? "SUBSCRIBE " : "UNSUBSCRIBE ").append(filter);
        inbox_.append(kDelimiter);
        inbox_subscriptions_.push_back({std::string{filter}, subscribe});
        post_drain = !std::exchange(inbox_drain_posted_, true);
    }
    if (post_drain) {
        post_drain_once();
    }
    return {};
}

// The strand's side of an operation whose frames went through the inbox (a publish, a
// subscription and its change to the set, a flush): complete once they are written, at once
// when there is no session yet or it is lost (kept for it), or not_connected when the client
// is leaving.
void Client::Impl::complete_after_drain(detail::Done done, bool made_again) {
    drain_inbox();
    if (session_open()) {
        complete_when_written(std::move(done), made_again);
    } else if (state_ == State::connecting || state_ == State::lost) {
        done.complete({});
    } else {
        done.complete(client_errc::not_connected);
    }
}

// The set the client makes again after a loss changes in the order the frames go out.
void Client::Impl::apply_subscriptions(std::vector<SubscriptionChange>& changes) {
    for (SubscriptionChange& change : changes) {
        if (change.subscribe) {
            undone_before_session_.erase(change.filter);
            subscriptions_.insert(std::move(change.filter));
        } else {
            subscriptions_.erase(change.filter);
            if (state_ == State::connecting) {
                undone_before_session_.insert(std::move(change.filter));  // even if RESTORED
            }
        }
    }
    changes.clear();
}

// An async_publish's frame went into the inbox with publish()'s, in the caller's order. Kept
// for the session but alone bigger than the offline buffer, it is dropped at once.
void Client::Impl::publish_queued(std::size_t frame_size, detail::Done done) {
    if ((state_ == State::connecting || state_ == State::lost) &&
        frame_size > options_.offline_buffer_bytes) {
        drain_inbox();
        done.complete(client_errc::buffer_full);
        return;
    }
    complete_after_drain(std::move(done), false);
}

void Client::Impl::disconnect(detail::Done done) {
    drain_inbox();
    switch (state_) {
        case State::idle:
        case State::closed:
            done.complete(client_errc::not_connected);
            return;
        case State::closing:
            done.complete(client_errc::closed);  // a disconnect is under way
            return;
        case State::connected:
            disconnect_done_ = std::move(done);
            enter(State::closing);
            connection_->disconnect(options_.disconnect_wait);
            return;
        case State::connecting:
        case State::lost:
            // No connection to say DISCONNECT on: the broker keeps the session for its
            // retention, and the caller hears so.
            close_connection();
            enter(State::closed, client_errc::closed);
            done.complete(client_errc::connection_lost);
            return;
    }
}

void Client::Impl::abort() {
    if (state_ == State::closed) {
        return;
    }
    close_connection();
    enter(State::closed, client_errc::closed);
}

// ---- The one place where the state changes -----------------------------------------------------

void Client::Impl::enter(State next, const std::error_code& why) {
    state_ = next;
    switch (next) {
        case State::idle:
        case State::connecting:
        case State::connected:
            break;
        case State::closing:
            accepting_.store(false);  // what publish() queued before the DISCONNECT goes first
            break;
        case State::lost:
            break;  // on_closed reports it once the loss's bookkeeping is done
        case State::closed:
            accepting_.store(false);
            attempt_timer_.cancel();
            reconnect_timer_.cancel();
            trim_timer_.cancel();
            drop_offline();
            {
                // Publishes made since the last drain are dropped too.
                std::lock_guard lock{inbox_mutex_};
                counters_.publishes_dropped += inbox_messages_;
                std::string{}.swap(inbox_);
                inbox_messages_ = 0;
            }
            // The event first: a completion may run inline (asio::use_future's does), and
            // whoever waits on it may look for the event.
            report({.kind = ClientEventKind::closed,
                    .error = why,
                    .text = why ? why.message() : std::string{"disconnected"}});
            finish_all(why);
            break;
    }
    publish_counters();
}

// ---- Connection attempts -----------------------------------------------------------------------

void Client::Impl::start_attempt() {
    connection_ = std::make_shared<Connection>(strand_, *this);
    if (tls_context_ != nullptr) {
        connection_->use_tls(tls_context_, options_.tls.insecure);
    }
    connection_->connect(options_.host, options_.port,
                         client::connect_frame(options_.name, options_.secret));
    attempt_timer_.expires_after(options_.connect_timeout);
    attempt_timer_.async_wait([self = shared_from_this(),
                               attempt = connection_](const std::error_code& error) {
        if (!error && self->connection_ == attempt && !attempt->connected() && !attempt->idle()) {
            self->close_connection();
            self->attempt_failed(client_errc::connect_timeout,
                                 "no answer to CONNECT within the connect timeout");
        }
    });
}

// A connection was not made or its CONNECT was not answered: the first connect fails, a
// reconnection tries again.
void Client::Impl::attempt_failed(const std::error_code& error, std::string_view reason) {
    attempt_timer_.cancel();
    if (state_ == State::connecting) {
        SessionInfo info;
        info.reason = reason;
        connect_done_.complete(error, std::move(info));
        enter(State::closed, error);
        return;
    }
    if (state_ == State::lost) {
        schedule_reconnect();
    }
}

void Client::Impl::schedule_reconnect() {
    if (!options_.reconnect.enabled ||
        (options_.reconnect.max_attempts != 0 && attempt_ >= options_.reconnect.max_attempts)) {
        enter(State::closed, client_errc::connection_lost);
        return;
    }
    ++attempt_;
    const auto delay = client::reconnect_delay(options_.reconnect, attempt_,
                                               std::uniform_real_distribution<>{0.0, 1.0}(random_));
    reconnect_timer_.expires_after(delay);
    reconnect_timer_.async_wait([self = shared_from_this()](const std::error_code& error) {
        if (!error && self->state_ == State::lost) {
            self->start_attempt();
        }
    });
    report({.kind = ClientEventKind::reconnecting, .attempt = attempt_, .delay = delay});
}

// Ends the connection without a word to the broker: what it had not sent is dropped.
void Client::Impl::close_connection() {
    attempt_timer_.cancel();
    if (connection_ == nullptr) {
        return;
    }
    connection_->abort();
    const std::uint64_t unsent = take_back_unsent();
    counters_.publishes_dropped += unsent;
    for (WaitingWrite& waiting : waiting_writes_) {
        waiting.done.complete(client_errc::closed);
    }
    waiting_writes_.clear();
    drop_connection();
}

void Client::Impl::drop_connection() {
    connection_->detach();
    connection_.reset();
}

// The frames the connection had not handed to the socket, now unsent_frames_: the PUBLISHes
// among them no longer count as sent. Returns how many they are.
std::uint64_t Client::Impl::take_back_unsent() {
    unsent_frames_ = connection_->take_unsent();
    std::uint64_t publishes = 0;
    for_each_encoded_frame(unsent_frames_, [&](std::string_view frame) {
        publishes += frame.starts_with("PUBLISH ") ? 1 : 0;
    });
    counters_.publishes_sent -= publishes;
    return publishes;
}

// ---- What the connection reports ---------------------------------------------------------------

void Client::Impl::on_accepted() {
    attempt_timer_.cancel();
    session_back(false, {});
}

void Client::Impl::on_restored(std::vector<std::string> topics) {
    attempt_timer_.cancel();
    session_back(true, std::move(topics));
}

void Client::Impl::session_back(bool restored, std::vector<std::string> topics) {
    const bool first = state_ == State::connecting;
    if (!first) {
        ++counters_.reconnects;
    }
    connected_at_ = std::chrono::steady_clock::now();
    enter(State::connected);
    reconcile_subscriptions(first, std::set<std::string>(topics.begin(), topics.end()));
    send_offline();
    ClientEventKind kind = restored ? ClientEventKind::restored : ClientEventKind::connected;
    if (!first && !restored) {
        kind = ClientEventKind::resubscribed;
    }
    // Reported once the session is in order: the handler may abort() or disconnect.
    report({.kind = kind, .topics = topics});
    if (first) {
        SessionInfo info;
        info.restored = restored;
        info.topics = std::move(topics);
        connect_done_.complete({}, std::move(info));  // nothing if the handler closed
    }
}

// Makes the broker's subscriptions (`kept`, what a RESTORED listed) the ones the client wants.
void Client::Impl::reconcile_subscriptions(bool first, const std::set<std::string>& kept) {
    for (const std::string& filter : kept) {
        if (first && !undone_before_session_.contains(filter)) {
            subscriptions_.insert(filter);  // a session left by an earlier run is ours
        } else if (!subscriptions_.contains(filter)) {
            connection_->send_frame("UNSUBSCRIBE " + filter);  // undone while away
        }
    }
    undone_before_session_.clear();
    // Made while connecting or away, or forgotten by the broker.
    for (const std::string& filter : subscriptions_) {
        if (!kept.contains(filter)) {
            connection_->send_frame("SUBSCRIBE " + filter);
        }
    }
}

void Client::Impl::on_refused(std::string_view frame) {
    // Not an ERROR: frame: whatever answered is not a PubSubX broker.
    const client_errc refusal =
        frame.starts_with("ERROR: ") ? classify_error_frame(frame) : client_errc::unexpected_reply;
    drop_connection();
    if (state_ == State::lost && worth_retrying(refusal, frame)) {
        attempt_failed(refusal, frame);
        return;
    }
    attempt_timer_.cancel();
    report({.kind = ClientEventKind::refused, .error = refusal, .text = std::string{frame}});
    if (state_ == State::connecting) {
        attempt_failed(refusal, frame);
    } else if (state_ == State::lost) {  // not closed from the handler meanwhile
        enter(State::closed, refusal);
    }
}

void Client::Impl::on_message(std::string_view topic, std::string_view data) {
    ++counters_.messages_received;
    if (message_handler_ && !detached_.load(std::memory_order_relaxed)) {
        message_handler_(topic, data);
    }
}

void Client::Impl::on_error(std::string_view frame) {
    ++counters_.broker_errors;
    // A SUBSCRIBE the broker refused is not made again after a loss.
    // (Refused, or revoked by a reload of --users: "... to 'f' any more: unsubscribed".)
    constexpr std::string_view kRefusedSubscribe{"ERROR: Not allowed to subscribe to '"};
    constexpr std::string_view kRevoked{"' any more: unsubscribed"};
    if (frame.starts_with(kRefusedSubscribe)) {
        std::string_view rest = frame.substr(kRefusedSubscribe.size());
        if (rest.ends_with(kRevoked)) {
            rest.remove_suffix(kRevoked.size());
        } else if (rest.ends_with("'")) {
            rest.remove_suffix(1);
        }
        subscriptions_.erase(std::string{rest});
    }
    report({.kind = ClientEventKind::broker_error,
            .error = classify_error_frame(frame),
            .text = std::string{frame}});
}

void Client::Impl::on_read_done() {
    publish_counters();
    if (batch_handler_ && !detached_.load(std::memory_order_relaxed)) {
        batch_handler_();
    }
}

void Client::Impl::on_written(std::uint64_t bytes) {
    complete_writes(bytes, false);
    drain_inbox();  // what publish() queued meanwhile, moved whole into the next write
    schedule_trim();
    publish_counters();
}

// Buffers keep their capacity from one write to the next (a steady stream reuses them); a
// few seconds after a write, those that are empty and grew past 1 MiB in a burst go back.
void Client::Impl::schedule_trim() {
    if (trim_armed_) {
        return;
    }
    trim_armed_ = true;
    trim_timer_.expires_after(std::chrono::seconds{5});
    trim_timer_.async_wait([self = shared_from_this()](const std::error_code& error) {
        self->trim_armed_ = false;
        if (!error) {
            self->trim();
        }
    });
}

void Client::Impl::trim() {
    client::release_if_large(spare_);
    {
        std::lock_guard lock{inbox_mutex_};
        client::release_if_large(inbox_);
    }
    if (connection_ != nullptr) {
        connection_->trim();
    }
}

// Completes `done` once everything queued on the connection so far is written: at once if it
// is (a drain may have queued the frame that `done` waits for, and its write may have ended,
// before this runs).
void Client::Impl::complete_when_written(detail::Done done, bool made_again) {
    const std::uint64_t end = connection_->bytes_queued();
    if (end <= connection_->bytes_written()) {
        done.complete({});
        return;
    }
    waiting_writes_.push_back({end, std::move(done), made_again});
}

void Client::Impl::complete_writes(std::uint64_t written, bool lost) {
    while (!waiting_writes_.empty() && waiting_writes_.front().end <= written) {
        WaitingWrite& waiting = waiting_writes_.front();
        // A PUBLISH written to a connection that is now lost may or may not have reached the
        // broker.
        const bool in_doubt = lost && !waiting.made_again;
        waiting.done.complete(in_doubt ? make_error_code(client_errc::connection_lost)
                                       : std::error_code{});
        waiting_writes_.pop_front();
    }
    if (lost) {
        // Beyond `written`: frames never sent, now kept in the offline buffer.
        for (WaitingWrite& waiting : waiting_writes_) {
            waiting.done.complete({});
        }
        waiting_writes_.clear();
    }
}

void Client::Impl::on_connect_failed(const std::error_code& error, std::string_view reason) {
    drop_connection();
    attempt_failed(error, reason);
}

void Client::Impl::on_closed(bool requested, const std::error_code& error) {
    if (state_ == State::closing) {
        if (!requested) {
            // The connection failed before the DISCONNECT was out: what it had not written is
            // dropped, and what it had may not have arrived.
            counters_.publishes_dropped += take_back_unsent();
            unsent_frames_.clear();
            for (WaitingWrite& waiting : waiting_writes_) {
                waiting.done.complete(client_errc::connection_lost);
            }
            waiting_writes_.clear();
        }
        drop_connection();
        enter(State::closed, requested
                                 ? std::error_code{}
                                 : (error ? error : make_error_code(client_errc::connection_lost)));
        return;
    }
    if (state_ != State::connected) {
        // The server closed before it answered CONNECT: connection_lost tells this apart from
        // a connection that was never made (Asio's and OpenSSL's codes).
        drop_connection();
        std::string reason{"the server closed the connection before it answered CONNECT"};
        if (error) {
            reason += " (" + error.message() + ")";
        }
        attempt_failed(client_errc::connection_lost, reason);
        return;
    }
    // Frames not yet handed to the socket were never sent: they go out after the restore,
    // before anything published since.
    take_back_unsent();
    complete_writes(connection_->bytes_queued(), true);
    drop_connection();
    // A session that lasted is a new start for the back-off; one that keeps flapping (two
    // clients taking the name from each other, say) goes on backing off.
    if (std::chrono::steady_clock::now() - connected_at_ >= options_.reconnect.max_delay) {
        attempt_ = 0;
    }
    enter(State::lost);
    keep_offline(unsent_frames_);
    unsent_frames_.clear();
    drain_inbox();
    // Reported once the bookkeeping is done: the handler may abort() or disconnect.
    const std::error_code why = error ? error : make_error_code(client_errc::connection_lost);
    report({.kind = ClientEventKind::lost, .error = why, .text = why.message()});
    if (state_ == State::lost) {
        schedule_reconnect();
    }
    publish_counters();
}

// ---- The offline buffer ------------------------------------------------------------------------

// The posted drain of publish(): while a write is under way the frames stay in the inbox, and
// on_written moves them into the next write without a copy. The drain stays "posted" so that
// publish() does not post more.
void Client::Impl::drain_posted() {
    if (session_open() && connection_->writing()) {
        return;
    }
    drain_inbox();
}

void Client::Impl::drain_inbox() {
    // The buffers are swapped, not copied, and keep their capacity: spare_ becomes the inbox,
    // the inbox's frames become the connection's, and its empty buffer the next spare.
    std::string frames = std::move(spare_);
    frames.clear();
    std::uint64_t messages = 0;
    {
        std::lock_guard lock{inbox_mutex_};
        inbox_drain_posted_ = false;
        frames.swap(inbox_);
        messages = std::exchange(inbox_messages_, 0);
        subscription_changes_.swap(inbox_subscriptions_);
    }
    apply_subscriptions(subscription_changes_);
    if (frames.empty()) {
        spare_ = std::move(frames);
        return;
    }
    if (session_open()) {
        // Counted before they go: whoever sees them arrive finds them in stats().
        counters_.publishes_sent += messages;
        publish_counters();
        connection_->send_encoded(frames);
        spare_ = std::move(frames);
    } else if (state_ == State::connecting || state_ == State::lost) {
        keep_offline(frames);
    } else {
        counters_.publishes_dropped += messages;
    }
    publish_counters();
}

// Keeps the PUBLISH frames of `frames`, dropping the oldest beyond the bound. (Subscriptions
// are made again from subscriptions_ when the session is back.)
void Client::Impl::keep_offline(std::string_view frames) {
    for_each_encoded_frame(frames, [&](std::string_view frame) {
        if (!frame.starts_with("PUBLISH ")) {
            return;
        }
        ++counters_.publishes_buffered;
        if (frame.size() > options_.offline_buffer_bytes) {
            ++counters_.publishes_dropped;  // alone bigger than the buffer: the others stay
            return;
        }
        offline_.emplace_back(frame);
        offline_bytes_ += frame.size();
    });
    while (offline_bytes_ > options_.offline_buffer_bytes && !offline_.empty()) {
        offline_bytes_ -= offline_.front().size();
        ++counters_.publishes_dropped;
        offline_.pop_front();
    }
}

void Client::Impl::send_offline() {
    std::string frames;
    const std::uint64_t messages = offline_.size();
    for (const std::string& frame : offline_) {
        frames.append(frame);
    }
    offline_.clear();
    offline_bytes_ = 0;
    if (!frames.empty()) {
        counters_.publishes_sent += messages;
        publish_counters();
        connection_->send_encoded(frames);
    }
    drain_inbox();
    publish_counters();
}

void Client::Impl::drop_offline() {
    counters_.publishes_dropped += offline_.size();
    offline_.clear();
    offline_bytes_ = 0;
}

// The close's completions: `why` is empty only for a DISCONNECT the broker answered by
// closing, which is then the one success.
void Client::Impl::finish_all(const std::error_code& why) {
    const std::error_code failed = why ? why : make_error_code(client_errc::closed);
    connect_done_.complete(failed, {});
    for (WaitingWrite& waiting : waiting_writes_) {
        waiting.done.complete(failed);
    }
    waiting_writes_.clear();
    disconnect_done_.complete(why);
}

void Client::Impl::report(ClientEvent event) {
    publish_counters();  // stats() agrees with what the event says
    if (event_handler_ && !detached_.load(std::memory_order_relaxed)) {
        event_handler_(event);
    }
}

// ---- Client ------------------------------------------------------------------------------------

Client::Client(const asio::any_io_executor& executor, ClientOptions options) {
    // The operations (posted to executor_) and the connection's handlers share this one strand.
    Strand strand = asio::make_strand(executor);
    executor_ = strand;
    impl_ = std::make_shared<Impl>(std::move(strand), std::move(options));
}

// Posted, not dispatched: from one of its own handlers, an abort run at once would drop the last
// reference to the Impl whose call is still under way below that handler.
Client::~Client() {
    impl_->detach();
    asio::post(executor_, [impl = impl_] { impl->abort(); });
}

void Client::set_message_handler(MessageHandler handler) {
    asio::dispatch(executor_, [impl = impl_, handler = std::move(handler)]() mutable {
        impl->set_handlers(&handler, nullptr, nullptr);
    });
}

void Client::set_event_handler(EventHandler handler) {
    asio::dispatch(executor_, [impl = impl_, handler = std::move(handler)]() mutable {
        impl->set_handlers(nullptr, &handler, nullptr);
    });
}

void Client::set_batch_handler(std::function<void()> handler) {
    asio::dispatch(executor_, [impl = impl_, handler = std::move(handler)]() mutable {
        impl->set_handlers(nullptr, nullptr, &handler);
    });
}

void Client::start_connect(detail::Connected done) {
    impl_->open_once();
    asio::dispatch(executor_, [impl = impl_, done = std::move(done)]() mutable {
        impl->connect(std::move(done));
    });
}

void Client::start_subscribe(std::string filter, bool subscribe, detail::Done done) {
    if (const std::error_code error = impl_->queue_subscription(filter, subscribe)) {
        done.complete(error);
        return;
    }
    asio::dispatch(executor_, [impl = impl_, done = std::move(done)]() mutable {
        impl->complete_after_drain(std::move(done), true);
    });
}

void Client::start_flush(detail::Done done) {
    asio::dispatch(executor_, [impl = impl_, done = std::move(done)]() mutable {
        impl->complete_after_drain(std::move(done), false);
    });
}

void Client::start_publish(std::string topic, std::string data, detail::Done done) {
    if (const std::error_code error = impl_->publish_now(topic, data)) {
        done.complete(error);
        return;
    }
    const std::size_t frame_size = topic.size() + data.size() + 12;  // PUBLISH, spaces, end
    asio::dispatch(executor_, [impl = impl_, frame_size, done = std::move(done)]() mutable {
        impl->publish_queued(frame_size, std::move(done));
    });
}

void Client::start_disconnect(detail::Done done) {
    asio::dispatch(executor_, [impl = impl_, done = std::move(done)]() mutable {
        impl->disconnect(std::move(done));
    });
}

std::error_code Client::publish(std::string_view topic, std::string_view data) {
    return impl_->publish_now(topic, data);
}

void Client::abort() {
    asio::dispatch(executor_, [impl = impl_] { impl->abort(); });
}

ClientStats Client::stats() const {
    return impl_->stats();
}

const ClientOptions& Client::options() const {
    return impl_->options();
}

}  // namespace pubsubx
