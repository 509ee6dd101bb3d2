#include "server.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <string>

#include "pubsubx/protocol.hpp"
#include "session.hpp"
#include "tls/connection.hpp"
#include "tls/server_context.hpp"

namespace pubsubx::server {

namespace {
// After a failed accept (out of file descriptors, say), wait a little instead of spinning.
constexpr auto kAcceptRetryDelay = std::chrono::milliseconds{100};
constexpr std::string_view kServerFull{"ERROR: Server is full, try again later"};

// Deadlines are checked at a quarter of the shortest one: a connection overruns its deadline
// by at most that much. Bounded so that short test timeouts work and long ones still sweep.
Clock::duration sweep_period(const ServerOptions& options) {
    Clock::duration shortest = kDrainTime;
    for (const Clock::duration timeout : {options.connect_timeout, options.write_timeout}) {
        if (timeout > Clock::duration::zero()) {
            shortest = std::min(shortest, timeout);
        }
    }
    return std::clamp<Clock::duration>(shortest / 4, std::chrono::milliseconds{10},
                                       std::chrono::seconds{1});
}
// Asio reports errno values in its own category, which std::errc does not match.
bool is_out_of_descriptors(const std::error_code& error) {
    return error.category() == asio::system_category() &&
           (error.value() == EMFILE || error.value() == ENFILE);
}

void listen(asio::ip::tcp::acceptor& acceptor, const asio::ip::tcp::endpoint& endpoint) {
    acceptor.open(endpoint.protocol());
    acceptor.set_option(asio::ip::tcp::acceptor::reuse_address(true));
    acceptor.bind(endpoint);
    acceptor.listen(asio::socket_base::max_listen_connections);
}
}  // namespace

std::string endpoint_text(const asio::ip::tcp::endpoint& endpoint) {
    const auto address = endpoint.address();
    const std::string host =
        address.is_v6() ? "[" + address.to_string() + "]" : address.to_string();
    return host + ":" + std::to_string(endpoint.port());
}

Server::Server(asio::io_context& io, const ServerOptions& options, Broker& broker, Logger& logger)
    : io_(io),
      options_(options),
      broker_(broker),
      logger_(logger),
      acceptor_(io),
      accept_retry_timer_(io),
      expiry_timer_(io),
      sweep_timer_(io),
      sweep_period_(sweep_period(options)) {
    if (options.plain) {
        listen(acceptor_, {asio::ip::make_address(options.bind_address), options.port});
    }
}

void Server::listen_tls(std::uint16_t port, const tls::ServerContext& context) {
    tls_ = std::make_unique<TlsListener>(
        TlsListener{asio::ip::tcp::acceptor{io_}, asio::steady_timer{io_}, context});
    listen(tls_->acceptor, {asio::ip::make_address(options_.bind_address), port});
}

Server::~Server() {
    // Sessions still owned by pending handlers are destroyed with the io_context, after this.
    for (Session* session = first_session_; session != nullptr; session = session->next_session_) {
        session->listed_ = false;
    }
}

void Server::update_limits(const ServerOptions& limits) {
    adopt_run_time_limits(options_, limits);
    sweep_period_ = sweep_period(options_);  // from the next sweep on
}

void Server::start() {
    reserve_spare_descriptor();
    if (acceptor_.is_open()) {
        accept_next(acceptor_);
    }
    if (tls_ != nullptr) {
        accept_next(tls_->acceptor);
    }
    start_deadline_sweep();
    if (options_.sys_interval > Clock::duration::zero()) {
        logger_.info("Publishing statistics on $SYS/broker/... every ",
                     seconds_text(options_.sys_interval));
        sys_ = std::make_unique<SysReporting>(
            SysReporting{asio::steady_timer{io_}, SysTopics{Clock::now()}});
        start_sys_timer();
    } else {
        logger_.info("No statistics on $SYS/broker/... (--sys-interval 0)");
    }
}

void Server::stop() {
    stopped_ = true;
    std::error_code ignored;
    acceptor_.close(ignored);
    if (tls_ != nullptr) {
        tls_->acceptor.close(ignored);
        tls_->accept_retry_timer.cancel();
    }
    if (spare_descriptor_ >= 0) {
        ::close(spare_descriptor_);
        spare_descriptor_ = -1;
    }
    accept_retry_timer_.cancel();
    expiry_timer_.cancel();
    sweep_timer_.cancel();
    if (sys_ != nullptr) {
        sys_->timer.cancel();
    }
}

bool Server::may_write_after(std::uint64_t change) const {
    return store_ == nullptr || !store_->hold_point() || store_->durable(change);
}

void Server::release_held_writes() {
    std::erase_if(held_, [](const std::weak_ptr<Session>& held) {
        const std::shared_ptr<Session> session = held.lock();
        return session == nullptr || session->release_hold_if_durable();
    });
}

void Server::interrupt_writes() {
    stopping_writes_ = true;
    for (Session* session = first_session_; session != nullptr; session = session->next_session_) {
        session->interrupt_write();
    }
}

void Server::add_session(Session& session) {
    session.next_session_ = first_session_;
    if (first_session_ != nullptr) {
        first_session_->previous_session_ = &session;
    }
    first_session_ = &session;
    session.listed_ = true;
    ++session_count_;
}

void Server::remove_session(Session& session) {
    if (session.previous_session_ != nullptr) {
        session.previous_session_->next_session_ = session.next_session_;
    } else {
        first_session_ = session.next_session_;
    }
    if (session.next_session_ != nullptr) {
        session.next_session_->previous_session_ = session.previous_session_;
    }
    session.listed_ = false;
    --session_count_;
    if (refusing_connections_ && session_count_ < options_.max_connections) {
        refusing_connections_ = false;
        logger_.info("Accepting connections again (", session_count_, " open)");
    }
}

void Server::accept_next(asio::ip::tcp::acceptor& acceptor) {
    acceptor.async_accept(io_, [this, &acceptor](const std::error_code& error, Socket socket) {
        if (error == asio::error::operation_aborted || stopped_) {
            return;
        }
        const bool tls = is_tls(acceptor);
        if (is_out_of_descriptors(error) && spare_descriptor_ >= 0) {
            refuse_with_spare_descriptor(acceptor);
            accept_next(acceptor);
            return;
        }
        if (error) {
            if (!refusing_connections_) {
                refusing_connections_ = true;
                logger_.error("Cannot accept a connection: ", error.message());
            }
            asio::steady_timer& retry_timer = tls ? tls_->accept_retry_timer : accept_retry_timer_;
            retry_timer.expires_after(kAcceptRetryDelay);
            retry_timer.async_wait([this, &acceptor](const std::error_code& wait_error) {
                if (!wait_error) {
                    reserve_spare_descriptor();
                    accept_next(acceptor);
                }
            });
            return;
        }
        on_accepted(std::move(socket), tls);
        accept_next(acceptor);
    });
}

void Server::on_accepted(Socket socket, bool tls) {
    if (options_.max_connections != 0 && session_count_ >= options_.max_connections) {
        refuse_connection(socket, tls);
        return;
    }
    if (refusing_connections_) {
        // An episode without a connection limit (out of descriptors) ends here.
        refusing_connections_ = false;
        logger_.info("Accepting connections again (", session_count_, " open)");
    }
    ++stats_.connections_accepted;
    if (tls) {
        std::make_shared<Session>(std::move(socket), *this,
                                  std::make_unique<tls::Connection>(tls_->context.current()))
            ->start();
        return;
    }
    std::make_shared<Session>(std::move(socket), *this)->start();
}

void Server::refuse_connection(Socket& socket, bool tls) {
    ++stats_.connections_refused;
    if (!refusing_connections_) {
        refusing_connections_ = true;
        logger_.error("Refusing connections: ", session_count_, " are open (--max-connections ",
                      options_.max_connections, ")");
    }
    // Best effort and without waiting: a fresh socket's send buffer takes this short frame.
    // A TLS client could not read it before a handshake: it is only closed.
    std::error_code ignored;
    if (!tls) {
        std::string reply;
        append_frame(reply, kServerFull);
        socket.non_blocking(true, ignored);
        stats_.bytes_sent += socket.write_some(asio::buffer(reply), ignored);
    }
    socket.shutdown(Socket::shutdown_both, ignored);
    socket.close(ignored);
}

void Server::refuse_with_spare_descriptor(asio::ip::tcp::acceptor& acceptor) {
    if (!refusing_connections_) {
        refusing_connections_ = true;
        logger_.error("Refusing connections: out of file descriptors with ", session_count_,
                      " connections open (raise the limit: ulimit -n)");
    }
    ::close(spare_descriptor_);
    spare_descriptor_ = -1;
    Socket socket{io_};
    std::error_code error;
    acceptor.non_blocking(true, error);  // the pending connection may be gone already
    acceptor.accept(socket, error);
    if (!error) {
        refuse_connection(socket, is_tls(acceptor));
    }
    reserve_spare_descriptor();
}

void Server::reserve_spare_descriptor() {
    if (spare_descriptor_ < 0) {
        spare_descriptor_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
}

void Server::start_deadline_sweep() {
    if (sweep_period_ == Clock::duration::zero()) {
        return;
    }
    sweep_timer_.expires_after(sweep_period_);
    sweep_timer_.async_wait([this](const std::error_code& error) {
        // A wait that had already ended when stop() cancelled it arms no next one.
        if (!error && !stopped_) {
            sweep_deadlines();
            start_deadline_sweep();
        }
    });
}

void Server::sweep_deadlines() {
    const TimePoint now = Clock::now();
    // check_deadlines may close a session but never destroys it here: its pending handlers own
    // it until they run, so the list stays intact while it is walked.
    for (Session* session = first_session_; session != nullptr; session = session->next_session_) {
        session->check_deadline(now);
    }
}

void Server::start_sys_timer() {
    sys_->timer.expires_after(options_.sys_interval);
    sys_->timer.async_wait([this](const std::error_code& error) {
        if (!error && !stopped_) {  // as for the sweep
            publish_sys_topics();
            start_sys_timer();
        }
    });
}

// The snapshot is taken before the round is published: its own deliveries count in the next.
void Server::publish_sys_topics() {
    const TimePoint now = Clock::now();
    for (const SysMessage& message : sys_->topics.update(sys_snapshot(), now)) {
        broker_.publish_system(message.topic, message.value, now);
    }
    apply_effects();
}

SysSnapshot Server::sys_snapshot() const {
    SysSnapshot snapshot;
    snapshot.broker = broker_.stats();
    snapshot.server = stats_;
    snapshot.clients = broker_.client_count();
    snapshot.lost_clients = broker_.lost_client_count();
    snapshot.topics = broker_.topic_count();
    snapshot.subscriptions = broker_.subscription_count();
    snapshot.filters = broker_.filter_count();
    snapshot.queued_bytes = broker_.total_queued_bytes();
    snapshot.connections = session_count_;
    snapshot.tls = tls_ != nullptr;
    snapshot.log_lines_dropped = logger_.lines_dropped();
    if (store_ != nullptr) {
        snapshot.store = store_->figures();
    }
    if (cluster_figures_) {
        snapshot.cluster = cluster_figures_();
    }
    return snapshot;
}

void Server::apply_effects() {
    broker_.take_effects(effects_);
    // Closes first: a flush asked for a connection that is closed since is then a no-op.
    for (const CloseRequest& request : effects_.close) {
        auto* session = static_cast<Session*>(request.connection);
        if (request.error_frame.empty()) {
            session->close_now(request.reason);
        } else {
            session->close_with_error(request.reason, request.error_frame);
        }
    }
    // Holds before flushes: a restored client's first write waits for the store.
    for (Connection* connection : effects_.hold_until_durable) {
        if (const auto change = store_ != nullptr ? store_->hold_point() : std::nullopt;
            change && !store_->durable(*change)) {
            auto* session = static_cast<Session*>(connection);
            session->hold_writes_until(*change);
            held_.push_back(session->weak_from_this());
        }
    }
    for (Connection* connection : effects_.flush) {
        static_cast<Session*>(connection)->request_flush();
    }
    if (effects_.arm_expiry) {
        arm_expiry(*effects_.arm_expiry);
    }
}

void Server::arm_expiry(TimePoint when) {
    if (expiry_armed_ && expiry_armed_for_ <= when) {
        return;
    }
    expiry_armed_ = true;
    expiry_armed_for_ = when;
    expiry_timer_.expires_at(when);
    expiry_timer_.async_wait([this](const std::error_code& error) {
        if (!error) {
            on_expiry_timer();
        }
    });
}

void Server::on_expiry_timer() {
    expiry_armed_ = false;
    broker_.expire_lost_clients(Clock::now());
    apply_effects();
}

}  // namespace pubsubx::server
