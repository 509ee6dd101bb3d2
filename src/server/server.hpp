// The Asio side of the broker: accepts connections, owns the broker core, the lost-client
// expiry timer, the $SYS statistics timer and the read buffer that all sessions share.
#pragma once

#include <array>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "pubsubx/broker.hpp"
#include "pubsubx/cluster_figures.hpp"
#include "pubsubx/durability_gate.hpp"
#include "pubsubx/log.hpp"
#include "pubsubx/login_gate.hpp"
#include "pubsubx/name_gate.hpp"
#include "pubsubx/server_stats.hpp"
#include "pubsubx/sys_topics.hpp"
#include "server_options.hpp"
#include "session.hpp"

namespace pubsubx::tls {
class ServerContext;
}

namespace pubsubx::server {

// "127.0.0.1:12000" or "[::1]:12000", as the log lines name an address.
std::string endpoint_text(const asio::ip::tcp::endpoint& endpoint);

class Server {
  public:
    // Binds and listens at once; throws std::system_error when it cannot (port in use, ...).
    Server(asio::io_context& io, const ServerOptions& options, Broker& broker, Logger& logger);
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    // The plain port's endpoint (options.plain only).
    asio::ip::tcp::endpoint local_endpoint() const { return acceptor_.local_endpoint(); }
    // Binds and listens for TLS connections on `port` of the bind address, handshakes with
    // `context`'s current certificate (it must outlive the server); throws std::system_error.
    void listen_tls(std::uint16_t port, const tls::ServerContext& context);
    bool tls_enabled() const { return tls_ != nullptr; }
    asio::ip::tcp::endpoint tls_local_endpoint() const { return tls_->acceptor.local_endpoint(); }
    bool tls_names_from_certificates() const { return options_.tls_names_from_certificates; }
    void start();
    void stop();
    // SIGHUP: the connection limits that may change at run time take `limits`' values:
    // max_frame at the next read, max_connections at the next accept, the timeouts for
    // connections accepted and writes started from now on.
    void update_limits(const ServerOptions& limits);
    // At a stop with a durable store: every write in flight ends, its unsent messages back in
    // their client's queue once the cancelled writes complete (run the io_context's ready
    // handlers), and no write starts again.
    void interrupt_writes();
    bool stopping_writes() const { return stopping_writes_; }
    // Cluster mode: CONNECTs of names this node does not hold wait for the gate.
    // Its figures join the $SYS topics.
    void attach_cluster(NameGate* gate, std::function<ClusterFigures()> figures) {
        name_gate_ = gate;
        cluster_figures_ = std::move(figures);
    }
    NameGate* name_gate() const { return name_gate_; }
    // --users: CONNECTs whose password must be checked the slow way wait for the gate.
    void attach_login_gate(LoginGate* gate) { login_gate_ = gate; }
    LoginGate* login_gate() const { return login_gate_; }
    // With a durable store: its figures join the $SYS topics.
    void attach_store(DurabilityGate* store) { store_ = store; }
    // A write held for the store may go when it has committed `change` (or cannot commit).
    bool may_write_after(std::uint64_t change) const;
    // The store committed, or its state changed: held sessions whose change is durable write.
    void release_held_writes();

    Broker& broker() { return broker_; }
    Logger& logger() { return logger_; }
    const ServerOptions& options() const { return options_; }
    ServerStats& stats() { return stats_; }
    std::size_t max_frame() const { return options_.max_frame; }
    std::size_t session_count() const { return session_count_; }
    // Every figure at this moment: for the $SYS topics and the HTTP metrics.
    SysSnapshot sys_snapshot() const;
    // Idle sessions own no read buffer: they wait for readability, then read into this one.
    std::span<char> read_buffer() { return read_buffer_; }
    // Carries out what the broker core asked for since the last call (effects.hpp): the one
    // place where its decisions reach sockets and timers. Called after every broker call.
    void apply_effects();

    // Every live session is in one intrusive list, so the deadline sweep can visit them and
    // the connection limit can count them without a container node per connection.
    void add_session(Session& session);
    void remove_session(Session& session);

  private:
    // The TLS port, when there is one.
    struct TlsListener {
        asio::ip::tcp::acceptor acceptor;
        asio::steady_timer accept_retry_timer;
        const tls::ServerContext& context;
    };

    void accept_next(asio::ip::tcp::acceptor& acceptor);
    bool is_tls(const asio::ip::tcp::acceptor& acceptor) const { return &acceptor != &acceptor_; }
    void on_accepted(Socket socket, bool tls);
    void refuse_connection(Socket& socket, bool tls);
    void arm_expiry(TimePoint when);
    // Out of file descriptors, a pending connection cannot even be accepted to be told that
    // the server is full: the spare descriptor is given up for it, then taken again.
    void refuse_with_spare_descriptor(asio::ip::tcp::acceptor& acceptor);
    void reserve_spare_descriptor();
    void on_expiry_timer();
    // Connect and write deadlines are checked by one periodic sweep over all sessions instead
    // of a timer per session: a timer would cost every idle connection memory.
    void start_deadline_sweep();
    void sweep_deadlines();
    void start_sys_timer();
    void publish_sys_topics();

    asio::io_context& io_;
    ServerOptions options_;
    Broker& broker_;
    Logger& logger_;
    asio::ip::tcp::acceptor acceptor_;  // the plain port (closed with --no-plain)
    std::unique_ptr<TlsListener> tls_;
    asio::steady_timer accept_retry_timer_;
    asio::steady_timer expiry_timer_;
    asio::steady_timer sweep_timer_;
    Clock::duration sweep_period_{};
    // The $SYS statistics: made only when they are on (--sys-interval), at start().
    struct SysReporting {
        asio::steady_timer timer;
        SysTopics topics;
    };
    std::unique_ptr<SysReporting> sys_;
    bool expiry_armed_ = false;
    bool stopping_writes_ = false;
    bool stopped_ = false;
    TimePoint expiry_armed_for_{};
    Session* first_session_ = nullptr;
    std::size_t session_count_ = 0;
    bool refusing_connections_ = false;  // for one log line per episode
    Effects effects_;                    // scratch for apply_effects, keeps its capacity
    int spare_descriptor_ = -1;
    ServerStats stats_;
    DurabilityGate* store_ = nullptr;
    NameGate* name_gate_ = nullptr;
    LoginGate* login_gate_ = nullptr;
    std::function<ClusterFigures()> cluster_figures_;
    std::vector<std::weak_ptr<Session>> held_;  // sessions holding writes for the store
    std::array<char, 64 * 1024> read_buffer_{};
};

}  // namespace pubsubx::server
