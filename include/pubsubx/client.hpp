// libpubsubx-client: a C++ client for a PubSubX broker, on Asio (docs/client-library.md).
//
//     asio::io_context io;
//     pubsubx::ClientOptions options;
//     options.port = 12000;
//     options.name = "sensor-1";
//     pubsubx::Client client{io.get_executor(), options};
//     client.set_message_handler([](std::string_view topic, std::string_view data) { ... });
//     client.async_connect([&](std::error_code error, pubsubx::SessionInfo) {
//         client.async_subscribe("room/#", asio::detached);
//         client.publish("room/1", "hello");
//     });
//     io.run();
//
// Every operation may be called from any thread: it runs on the client's strand. Asynchronous
// operations take any Asio completion token (a callback, asio::use_future, asio::use_awaitable,
// asio::detached). After a lost connection the client reconnects with the same name and secret,
// and the broker's RESTORED brings back its subscriptions and the messages it missed.
//
// This header needs only Asio (standalone, Debian's libasio-dev) and the standard library.
#pragma once

#include <asio/any_io_executor.hpp>
#include <asio/associated_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/post.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

namespace pubsubx {

// ---- Errors ----------------------------------------------------------------------------------

// What went wrong, in client_category(). The broker's refusals are its `ERROR:` frames; the
// exact frame is in ClientEvent::text and SessionInfo::reason. Network failures keep Asio's own
// codes (asio::error::connection_refused, ...), TLS failures OpenSSL's.
enum class client_errc {
    // The broker's answers.
    name_taken = 1,          // ERROR: Name already taken
    not_authorized,          // ERROR: Not authorized (a wrong secret or password)
    invalid_name,            // ERROR: Invalid name
    invalid_secret,          // ERROR: Invalid secret
    server_full,             // ERROR: Server is full, try again later
    name_moving,             // ERROR: Name is moving to another node of the cluster
    not_allowed,             // ERROR: Not allowed to publish to / subscribe to (--users)
    invalid_topic,           // ERROR: Invalid topic, wildcard misuse, a reserved topic
    topic_too_long,          // ERROR: Topic too long
    too_many_subscriptions,  // ERROR: Too many subscriptions / levels in a filter
    frame_too_long,          // ERROR: Frame too long
    broker_error,            // any other ERROR: frame
    // The client's own.
    not_connected = 100,  // no connection was ever made, or the client was closed
    already_connected,    // async_connect on a client that is connected or connecting
    connection_lost,      // the connection ended (the client reconnects unless told not to), or
                          // async_connect: it ended before the broker answered CONNECT
    connect_timeout,      // no answer to CONNECT within ClientOptions::connect_timeout
    closed,               // disconnect() or abort() ended the operation
    buffer_full,          // more than ClientOptions::max_unsent_bytes wait to be sent
    unexpected_reply,     // the server answered CONNECT with something that is no answer
    invalid_message,      // the data holds the frame delimiter "\n\nx", which no frame can carry
};

const std::error_category& client_category();
std::error_code make_error_code(client_errc error);
// The code of a broker's `ERROR: ...` frame.
client_errc classify_error_frame(std::string_view frame);

}  // namespace pubsubx

template <>
struct std::is_error_code_enum<pubsubx::client_errc> : std::true_type {};

namespace pubsubx {

// ---- Options ---------------------------------------------------------------------------------

struct TlsOptions {
    bool enabled = false;
    std::string ca_file;      // empty: the system's trusted CAs
    std::string certificate;  // with private_key: a client certificate (mutual TLS)
    std::string private_key;
    bool insecure = false;  // no check of the server's certificate or name: testing only
};

struct ReconnectOptions {
    bool enabled = true;
    // The wait before attempt n is initial_delay * multiplier^(n-1), at most max_delay, less a
    // random part of up to `jitter` of it (so that many clients do not come back at once).
    std::chrono::milliseconds initial_delay{100};
    std::chrono::milliseconds max_delay{5000};
    double multiplier = 2.0;
    double jitter = 0.5;             // 0..1
    std::uint32_t max_attempts = 0;  // 0: try until abort() or disconnect()
};

struct ClientOptions {
    std::string host = "localhost";
    std::uint16_t port = 12000;
    std::string name;  // 1..64 bytes, no spaces; required
    // The session-resume secret (CONNECT <name> <secret>): only a client with it may resume
    // the session, or take it over from a half-open connection. With --users, the password.
    std::string secret;
    TlsOptions tls;
    ReconnectOptions reconnect;
    // Publishes made while the connection is lost wait here, oldest dropped first (counted in
    // ClientStats::publishes_dropped), and go out once the session is back. 0: dropped at once.
    std::size_t offline_buffer_bytes = 4 * 1024 * 1024;
    // While connected: publish() refuses with buffer_full when this much waits to be written
    // (a broker that reads slower than the program publishes).
    std::size_t max_unsent_bytes = 64 * 1024 * 1024;
    // For the TCP connection, the TLS handshake and the broker's answer to CONNECT together.
    std::chrono::milliseconds connect_timeout{10000};
    // Off: publish and subscribe leave every topic to the broker, which refuses a bad one with
    // its ERROR: frame (a broker_error event) in its own words and in the order of its other
    // answers, as pubsubx-client shows them. On: invalid_topic at once, and nothing is sent.
    bool check_topics = true;
    // After DISCONNECT, how long to read on for the error frames the broker still owes (the
    // protocol has no acks: a refusal of the last frames comes just before the broker's close).
    std::chrono::milliseconds disconnect_wait{10000};
};

// ---- What the client reports -----------------------------------------------------------------

// The broker's answer to a CONNECT.
struct SessionInfo {
    bool restored = false;            // RESTORED: the broker kept this client while it was away
    std::vector<std::string> topics;  // restored: the subscriptions the broker kept
    std::string reason;               // on failure: the broker's frame or the network's reason
};

enum class ClientEventKind {
    connected,  // OK: Conn accepted (a new session)
    restored,   // RESTORED after a loss: subscriptions and missed messages are back
    // Reconnected, but the broker no longer knew this client (past its retention, or restarted
    // without --data-dir): the client subscribed again; messages meanwhile are lost.
    resubscribed,
    lost,          // the connection ended without DISCONNECT; `error` says why
    reconnecting,  // an attempt is due after `delay`
    refused,       // the broker refused a CONNECT (`error`, `text`); no more attempts follow
    broker_error,  // an ERROR: frame on a live connection (a refused PUBLISH or SUBSCRIBE)
    closed,        // the client is done: disconnect(), abort(), a refusal or attempts used up
};

struct ClientEvent {
    ClientEventKind kind = ClientEventKind::connected;
    std::error_code error{};
    std::string text{};                 // the broker's frame, or a description
    std::vector<std::string> topics{};  // restored: the subscriptions the broker kept
    std::uint32_t attempt = 0;          // reconnecting: 1, 2, ...
    std::chrono::milliseconds delay{};  // reconnecting: the wait before the attempt
};

struct ClientStats {
    std::uint64_t messages_received = 0;
    std::uint64_t publishes_sent = 0;      // handed to the connection
    std::uint64_t publishes_buffered = 0;  // kept while the connection was lost (in total)
    std::uint64_t publishes_dropped = 0;   // dropped from a full offline buffer, or at close
    std::uint64_t reconnects = 0;          // sessions taken up again after a loss
    std::uint64_t broker_errors = 0;       // ERROR: frames on live connections
    std::size_t offline_bytes = 0;         // waiting in the offline buffer now
};

// ---- The client ------------------------------------------------------------------------------

namespace detail {

// A completion handler of any type behind one interface: the header's templates wrap the
// token's handler in one, the library's compiled part completes it. It runs on the handler's
// own executor, which is kept busy (a work guard) until then.
template <typename... Args>
class Completion {
  public:
    Completion() = default;
    template <typename Handler>
    Completion(Handler&& handler, const asio::any_io_executor& fallback)
        : holder_(std::make_unique<Holder<std::decay_t<Handler>>>(std::forward<Handler>(handler),
                                                                  fallback)) {}
    explicit operator bool() const { return holder_ != nullptr; }
    // Posts the handler with these arguments to its executor; the completion is then empty.
    void complete(Args... args) {
        if (auto holder = std::move(holder_)) {
            holder->complete(std::move(holder), std::move(args)...);
        }
    }

  private:
    struct Base {
        virtual ~Base() = default;
        virtual void complete(std::unique_ptr<Base> self, Args... args) = 0;
    };
    template <typename Handler>
    struct Holder final : Base {
        Holder(Handler&& h, const asio::any_io_executor& fallback)
            : handler(std::move(h)),
              work(asio::make_work_guard(asio::get_associated_executor(handler, fallback))) {}
        Holder(const Handler& h, const asio::any_io_executor& fallback)
            : handler(h),
              work(asio::make_work_guard(asio::get_associated_executor(handler, fallback))) {}
        void complete(std::unique_ptr<Base>, Args... args) override {
            auto executor = work.get_executor();
            asio::post(executor, [handler = std::move(handler), work = std::move(work),
                                  ... args = std::move(args)]() mutable {
                std::move(handler)(std::move(args)...);
            });
        }
        Handler handler;
        asio::executor_work_guard<asio::associated_executor_t<Handler, asio::any_io_executor>> work;
    };
    std::unique_ptr<Base> holder_;
};

using Done = Completion<std::error_code>;
using Connected = Completion<std::error_code, SessionInfo>;

}  // namespace detail

class Client {
  public:
    using executor_type = asio::any_io_executor;
    // The topic and data are valid during the call only.
    using MessageHandler = std::function<void(std::string_view topic, std::string_view data)>;
    using EventHandler = std::function<void(const ClientEvent& event)>;

    // The client runs on a strand of `executor`; nothing happens until async_connect.
    Client(const asio::any_io_executor& executor, ClientOptions options);
    // Closes at once, like abort(). Destroy the client where none of its handlers runs: on its
    // own strand (from a handler) or once the io_context is stopped, as with Asio's objects.
    ~Client();
    Client(const Client&) = delete;
    Client& operator=(const Client&) = delete;

    // Handlers run on the client's strand, one at a time. Set them before async_connect.
    void set_message_handler(MessageHandler handler);
    void set_event_handler(EventHandler handler);
    // Called after the messages of one read were handed on: a good moment to flush output.
    void set_batch_handler(std::function<void()> handler);

    // Connects, says CONNECT <name> [<secret>] and completes with the broker's answer:
    // void(std::error_code, SessionInfo). A refusal is not retried; a lost connection later is.
    template <typename Token>
    auto async_connect(Token&& token) {
        return asio::async_initiate<Token, void(std::error_code, SessionInfo)>(
            [this](auto handler) {
                start_connect({std::move(handler), executor_});
            },
            token);
    }

    // SUBSCRIBE: void(std::error_code) once the frame is written (the protocol has no
    // acknowledgement; a refusal arrives as a broker_error event). While the connection is
    // lost it completes at once and the subscription is made when the session is back.
    template <typename Token>
    auto async_subscribe(std::string filter, Token&& token) {
        return asio::async_initiate<Token, void(std::error_code)>(
            [this](auto handler, std::string filter) {
                start_subscribe(std::move(filter), true, {std::move(handler), executor_});
            },
            token, std::move(filter));
    }
    template <typename Token>
    auto async_unsubscribe(std::string filter, Token&& token) {
        return asio::async_initiate<Token, void(std::error_code)>(
            [this](auto handler, std::string filter) {
                start_subscribe(std::move(filter), false, {std::move(handler), executor_});
            },
            token, std::move(filter));
    }

    // PUBLISH: void(std::error_code) once the frame is written, or kept in the offline buffer
    // while the connection is lost. Awaiting each one paces a publisher to the connection.
    // Its frame is queued at the call, with publish()'s, so one thread's publishes keep their
    // order whichever way they are made.
    template <typename Token>
    auto async_publish(std::string topic, std::string data, Token&& token) {
        return asio::async_initiate<Token, void(std::error_code)>(
            [this](auto handler, std::string topic, std::string data) {
                start_publish(std::move(topic), std::move(data), {std::move(handler), executor_});
            },
            token, std::move(topic), std::move(data));
    }
    // PUBLISH without a completion, the fast way from any thread: the frame is queued at once
    // and goes out with others in one write. An invalid topic, a closed client or a full send
    // buffer is refused here.
    std::error_code publish(std::string_view topic, std::string_view data);

    // void(std::error_code) once everything queued before it (publishes, subscriptions) is
    // written to the connection, however long that takes; without a session, at once (it is
    // kept for the session). Before async_disconnect, it gives the writes all the time they
    // need and leaves disconnect_wait for the DISCONNECT alone.
    template <typename Token>
    auto async_flush(Token&& token) {
        return asio::async_initiate<Token, void(std::error_code)>(
            [this](auto handler) {
                start_flush({std::move(handler), executor_});
            },
            token);
    }

    // DISCONNECT: the broker forgets this client. Completes once the broker has closed the
    // connection (at most disconnect_wait after it), so that every error frame it owed was
    // reported. Publishes still in the offline buffer are dropped and counted.
    template <typename Token>
    auto async_disconnect(Token&& token) {
        return asio::async_initiate<Token, void(std::error_code)>(
            [this](auto handler) {
                start_disconnect({std::move(handler), executor_});
            },
            token);
    }
    // Closes at once without DISCONNECT: the broker keeps the session as a lost client for its
    // retention period. No reconnection follows.
    void abort();

    // Any thread.
    ClientStats stats() const;
    const ClientOptions& options() const;
    // The client's strand.
    executor_type get_executor() const { return executor_; }

    class Impl;

  private:
    void start_connect(detail::Connected done);
    void start_subscribe(std::string filter, bool subscribe, detail::Done done);
    void start_publish(std::string topic, std::string data, detail::Done done);
    void start_flush(detail::Done done);
    void start_disconnect(detail::Done done);

    asio::any_io_executor executor_;
    std::shared_ptr<Impl> impl_;
};

// ---- A synchronous facade --------------------------------------------------------------------

// For scripts and tests that do not want Asio: the same Client on a thread of its own. Every
// call blocks until done and throws std::system_error on failure.
class SyncClient {
  public:
    struct Message {
        std::string topic;
        std::string data;
    };

    // Messages that arrive faster than next_message() takes them wait in a queue of at most
    // `max_queued_messages`; beyond it the oldest are dropped (dropped_messages()).
    explicit SyncClient(std::size_t max_queued_messages = 65536);
    ~SyncClient();  // disconnects if connected, stops the thread
    SyncClient(const SyncClient&) = delete;
    SyncClient& operator=(const SyncClient&) = delete;

    SessionInfo connect(ClientOptions options);
    void subscribe(const std::string& filter);
    void unsubscribe(const std::string& filter);
    void publish(std::string_view topic, std::string_view data);
    // The next message, or nothing after `timeout`.
    std::optional<Message> next_message(std::chrono::milliseconds timeout);
    void disconnect();

    // Events since the last call (lost, restored, broker_error, ...).
    std::vector<ClientEvent> take_events();
    std::uint64_t dropped_messages() const;
    ClientStats stats() const;

  private:
    class State;
    std::unique_ptr<State> state_;
};

}  // namespace pubsubx
