// pubsubx-server: parses the command line, starts the broker and runs it until SIGINT/SIGTERM.
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/signal_set.hpp>
#include <asio/steady_timer.hpp>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <system_error>

#include "cluster/cluster_node.hpp"
#include "http/http_service.hpp"
#include "log_file.hpp"
#include "pubsubx/broker.hpp"
#include "pubsubx/log.hpp"
#include "pubsubx/version.hpp"
#include "security/password_checker.hpp"
#include "security/users_file.hpp"
#include "server.hpp"
#include "settings.hpp"
#include "store/durable_store.hpp"
#include "tls/server_context.hpp"

namespace {

using pubsubx::server::endpoint_text;
using pubsubx::server::LogTimestamps;
using pubsubx::server::Settings;

std::string server_stats_text(const pubsubx::server::ServerStats& stats, bool tls) {
    return "connections_accepted=" + std::to_string(stats.connections_accepted) +
           " connections_refused=" + std::to_string(stats.connections_refused) +
           " connect_timeouts=" + std::to_string(stats.connect_timeouts) +
           " write_timeouts=" + std::to_string(stats.write_timeouts) +
           " frames_too_long=" + std::to_string(stats.frames_too_long) +
           " frames_unsent_at_close=" + std::to_string(stats.frames_unsent_at_close) +
           (tls ? " tls_handshakes=" + std::to_string(stats.tls_handshakes) +
                      " tls_handshakes_failed=" + std::to_string(stats.tls_handshakes_failed) +
                      " tls_handshake_timeouts=" + std::to_string(stats.tls_handshake_timeouts) +
                      " tls_names_refused=" + std::to_string(stats.tls_names_refused)
                : std::string{});
}

// A log reader that stops reading must not block the event loop: when the log is a pipe or a
// socket, its writes become non-blocking and the Logger drops what does not fit. A file or a
// terminal is left alone (its flag is shared with the shell). The flag belongs to the open
// file, which other processes may share, so it is put back at exit.
class NonBlockingLog {
  public:
    explicit NonBlockingLog(int fd) : fd_(fd) {
        struct stat status {};
        if (fstat(fd, &status) != 0) {
            return;
        }
        // A pipe or a terminal is opened again, so the non-blocking flag stays on a file
        // description of our own: other writers to the same pipe (a shell pipeline) and the
        // shell after us never see it.
        if (S_ISFIFO(status.st_mode) || S_ISCHR(status.st_mode)) {
            const std::string path = "/proc/self/fd/" + std::to_string(fd);
            const int own = open(path.c_str(), O_WRONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
            if (own >= 0) {
                saved_ = dup(fd);
                dup2(own, fd);
                close(own);
            }
            return;
        }
        if (!S_ISSOCK(status.st_mode)) {
            return;
        }
        flags_ = fcntl(fd, F_GETFL);
        if (flags_ >= 0 && (flags_ & O_NONBLOCK) == 0) {
            fcntl(fd, F_SETFL, flags_ | O_NONBLOCK);
            changed_ = true;
        }
    }
    ~NonBlockingLog() {
        if (changed_) {
            fcntl(fd_, F_SETFL, flags_);
        }
        if (saved_ >= 0) {
            dup2(saved_, fd_);
            close(saved_);
        }
    }
    NonBlockingLog(const NonBlockingLog&) = delete;
    NonBlockingLog& operator=(const NonBlockingLog&) = delete;

  private:
    int fd_;
    int flags_ = -1;
    int saved_ = -1;  // the inherited description, put back at exit
    bool changed_ = false;
};

// Descriptors kept for everything but connections: stdio, the listener, the spare one for
// refusing when out of descriptors, epoll, Asio's interrupter and signal pipe, timers.
constexpr rlim_t kDescriptorHeadroom = 32;

// Raises the soft descriptor limit to the hard one (the usual soft limit of 1024 would cap
// connections far below the default --max-connections) and returns it.
rlim_t raise_descriptor_limit() {
    rlimit limit{};
    if (getrlimit(RLIMIT_NOFILE, &limit) != 0) {
        return RLIM_INFINITY;
    }
    if (limit.rlim_cur != limit.rlim_max) {
        rlimit raised = limit;
        raised.rlim_cur = limit.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &raised) == 0) {
            return raised.rlim_cur;
        }
    }
    return limit.rlim_cur;
}

// A --max-connections the descriptor limit cannot hold is lowered, in one log line. 0 (no
// limit) stays: past the descriptor limit a client is still told the server is full.
// Quietly at SIGHUP (`logger` null): the start said so, and the limit has not changed since.
void fit_connections_to_descriptors(std::size_t& max_connections, rlim_t descriptor_limit,
                                    const Settings& line, pubsubx::Logger* logger) {
    if (descriptor_limit == RLIM_INFINITY || max_connections == 0) {
        return;
    }
    // --http-port's server holds a bounded number of descriptors of its own.
    const rlim_t headroom =
        kDescriptorHeadroom + (line.http.port ? pubsubx::http::HttpServer::kMaxDescriptors : 0);
    const rlim_t room = descriptor_limit > headroom ? descriptor_limit - headroom : 1;
    if (max_connections > room) {
        if (logger != nullptr) {
            logger->always("--max-connections lowered from ", max_connections, " to ", room,
                           ": the file descriptor limit is ", descriptor_limit, " (ulimit -n)");
        }
        max_connections = static_cast<std::size_t>(room);
    }
}

std::string store_figures_text(const pubsubx::StoreFigures& figures) {
    return "store_messages_written=" + std::to_string(figures.messages_written) +
           " store_messages_stored=" + std::to_string(figures.messages_stored) +
           " store_messages_not_durable=" + std::to_string(figures.messages_not_durable) +
           " store_commits=" + std::to_string(figures.commits) +
           " store_failed_commits=" + std::to_string(figures.failed_commits) +
           " store_rewrites=" + std::to_string(figures.rewrites) +
           " store_backlog_bytes=" + std::to_string(figures.backlog_bytes);
}

std::string cluster_figures_text(const pubsubx::cluster::ClusterFigures& figures) {
    return "cluster_forwarded=" + std::to_string(figures.forwarded) +
           " cluster_received=" + std::to_string(figures.received) +
           " cluster_duplicates=" + std::to_string(figures.duplicates) +
           " cluster_lost=" + std::to_string(figures.lost) +
           " cluster_not_forwarded=" + std::to_string(figures.not_forwarded) +
           " cluster_dropped_by_nats=" + std::to_string(figures.dropped_by_nats) +
           " cluster_damaged=" + std::to_string(figures.damaged) +
           " cluster_disconnects=" + std::to_string(figures.disconnects) +
           " cluster_lease_lapses=" + std::to_string(figures.lease_lapses) +
           " cluster_handed_in=" + std::to_string(figures.handed_in) +
           " cluster_handed_out=" + std::to_string(figures.handed_out) +
           " cluster_registry_refusals=" + std::to_string(figures.registry_refusals) +
           " cluster_nodes=" + std::to_string(figures.nodes);
}

std::string host_name() {
    char name[256] = {};
    if (gethostname(name, sizeof name - 1) != 0 || name[0] == '\0') {
        return "node";
    }
    return name;
}

// At start: the users file must be whole, or the server does not start.
std::optional<pubsubx::AccountTable> load_users(const std::string& path, pubsubx::Logger& logger) {
    auto read = pubsubx::security::read_users_file(path);
    if (const auto* error = std::get_if<pubsubx::security::UsersFileError>(&read)) {
        logger.error("Cannot use the ", pubsubx::security::describe(path, *error));
        return std::nullopt;
    }
    if (pubsubx::security::readable_by_others(path)) {
        logger.warning("Users file ", path,
                       " is readable by other users of this machine, who could guess its "
                       "passwords offline (chmod o-r ",
                       path, ")");
    }
    return std::get<pubsubx::AccountTable>(std::move(read));
}

// SIGHUP: a broken file keeps the accounts in force.
void reload_users(const std::string& path, pubsubx::Broker& broker, pubsubx::Logger& logger) {
    auto read = pubsubx::security::read_users_file(path);
    if (const auto* error = std::get_if<pubsubx::security::UsersFileError>(&read)) {
        logger.error("Not reloaded: ", pubsubx::security::describe(path, *error),
                     "; the users and permissions in force stay");
        return;
    }
    auto& table = std::get<pubsubx::AccountTable>(read);
    const std::size_t users = table.users.size();
    const pubsubx::Broker::AccountsChange change = broker.replace_accounts(std::move(table));
    logger.always("Reloaded users file ", path, ": ", users, " user(s); ", change.clients_removed,
                  " client(s) removed and ", change.subscriptions_ended,
                  " subscription(s) ended by the new permissions");
}

// SIGHUP: a certificate or key that cannot be used keeps the ones in force.
void reload_tls(pubsubx::tls::ServerContext& tls, const pubsubx::tls::ServerTlsFiles& files,
                pubsubx::Logger& logger) {
    std::string reload_error;
    if (tls.reload(reload_error)) {
        logger.always("SIGHUP: TLS certificate and key reloaded from ", files.certificate_chain,
                      " and ", files.private_key, "; new connections use them");
    } else {
        logger.error("SIGHUP: TLS reload failed, keeping the previous certificate: ", reload_error);
    }
}

// The journal adds its own timestamp: JOURNAL_STREAM names the stream it reads
// ("device:inode"), and the line goes to the journal when standard output is that stream.
bool journal_reads(int fd) {
    const char* stream = std::getenv("JOURNAL_STREAM");
    struct stat status {};
    if (stream == nullptr || fstat(fd, &status) != 0) {
        return false;
    }
    unsigned long long device = 0;
    unsigned long long inode = 0;
    return std::sscanf(stream, "%llu:%llu", &device, &inode) == 2 && device == status.st_dev &&
           inode == status.st_ino;
}

pubsubx::LogStyle log_style(const Settings& line) {
    switch (line.log_timestamps) {
        case LogTimestamps::off:
            return pubsubx::LogStyle::plain;
        case LogTimestamps::on:
            return pubsubx::LogStyle::timestamped;
        case LogTimestamps::automatic:
            break;
    }
    return line.log_file.empty() && journal_reads(STDOUT_FILENO) ? pubsubx::LogStyle::journal
                                                                 : pubsubx::LogStyle::timestamped;
}

pubsubx::cluster::ClusterSettings cluster_settings(const Settings& line) {
    pubsubx::cluster::ClusterSettings cluster;
    cluster.servers = line.cluster_servers;
    cluster.cluster = line.cluster_name;
    cluster.node = line.node_name;
    cluster.lease = line.cluster_lease;
    cluster.handover_window = line.handover_window;
    return cluster;
}

// SIGHUP with --log-file: logrotate moved the file away; a new one is opened at its path.
void reopen_log_file(pubsubx::server::LogFile& log_file, pubsubx::Logger& logger) {
    std::string reopen_error;
    if (log_file.reopen(reopen_error)) {
        logger.always("SIGHUP: log file ", log_file.path(), " reopened");
    } else {
        logger.error("SIGHUP: ", reopen_error, "; logging on to the file open before");
    }
}

// SIGHUP with --config: the file is read again with the same command line. The settings that
// can change at run time take their new values, each said in a line; a change to any other
// is named as waiting for a restart; a file that cannot be used changes nothing.
void reload_settings(const std::vector<std::string>& arguments, Settings& in_force,
                     pubsubx::Broker& broker, pubsubx::server::Server& server,
                     pubsubx::Logger& logger) {
    Settings read;
    std::string error;
    if (!pubsubx::server::reread_settings(arguments, read, error)) {
        logger.error("SIGHUP: configuration not reloaded, the settings in force stay: ", error);
        return;
    }
    const std::size_t asked_connections = read.server.max_connections;
    // The HTTP server in force (http-port changes only at a restart) holds its descriptors.
    fit_connections_to_descriptors(read.server.max_connections, raise_descriptor_limit(), in_force,
                                   nullptr);
    const auto changes = pubsubx::server::compare_settings(in_force, read);
    for (const auto& change : changes) {
        if (change.at_run_time) {
            const bool lowered =
                change.key == "max-connections" && read.server.max_connections != asked_connections;
            logger.always("SIGHUP: ", change.key, " changed from ", change.in_force, " to ",
                          change.read,
                          lowered ? " (in force: " + std::to_string(read.server.max_connections) +
                                        ", what the file descriptor limit holds)"
                                  : std::string{});
            in_force.effective[change.key] = change.read;
        } else {
            logger.warning("SIGHUP: ", change.key, " is ", change.read, " in ",
                           in_force.config_file, " but stays ", change.in_force,
                           " until a restart");
        }
    }
    if (changes.empty()) {
        logger.always("SIGHUP: configuration ", in_force.config_file, " read again, no change");
    }
    pubsubx::server::keep_run_time_settings(in_force, read);
    logger.set_level(in_force.log_level());
    logger.set_style(log_style(in_force));
    broker.update_limits(in_force.broker);
    server.update_limits(in_force.server);
    server.apply_effects();
}

}  // namespace

int main(int argc, char** argv) {
    const std::vector<std::string> arguments(argv, argv + argc);
    Settings line;
    if (const auto exit_code = pubsubx::server::read_settings(arguments, line)) {
        return *exit_code;
    }
    // A log reader that went away must not kill the broker: its writes fail with EPIPE and the
    // Logger counts the lines it drops.
    std::signal(SIGPIPE, SIG_IGN);
    // A reload asked for while the server starts (the store may take a while to load) must not
    // end it: SIGHUP is handled once the server runs.
    std::signal(SIGHUP, SIG_IGN);
    const NonBlockingLog non_blocking_log{line.log_file.empty() ? STDOUT_FILENO : -1};
    pubsubx::Logger logger{line.log_level(), STDOUT_FILENO};
    logger.set_style(log_style(line));
    std::unique_ptr<pubsubx::server::LogFile> log_file;
    if (!line.log_file.empty()) {
        std::string log_error;
        log_file = pubsubx::server::LogFile::open(line.log_file, log_error);
        if (log_file == nullptr) {
            logger.error("Cannot log: ", log_error);
            logger.flush(std::chrono::seconds{1});
            return 1;
        }
        logger.set_sink(log_file.get());
    }
    fit_connections_to_descriptors(line.server.max_connections, raise_descriptor_limit(), line,
                                   &logger);
    pubsubx::Broker broker{line.broker, logger};

    // The io_context is destroyed before the broker: sessions still owned by its handlers
    // never outlive the core.
    asio::io_context io{1};
    std::error_code error;
    const auto address = asio::ip::make_address(line.server.bind_address, error);
    if (error) {
        logger.error("Invalid --bind address '", line.server.bind_address, "'");
        return 2;
    }
    std::unique_ptr<pubsubx::tls::ServerContext> tls;
    if (line.tls_port) {
        std::string tls_error;
        tls = pubsubx::tls::ServerContext::load(line.tls, tls_error);
        if (tls == nullptr) {
            logger.error("Cannot use the TLS settings: ", tls_error);
            logger.flush(std::chrono::seconds{1});
            return 1;
        }
    }
    std::optional<pubsubx::server::Server> server;
    try {
        server.emplace(io, line.server, broker, logger);
    } catch (const std::system_error& failure) {
        logger.error("Cannot listen on ", endpoint_text({address, line.server.port}), ": ",
                     failure.code().message());
        return 1;
    }
    if (tls != nullptr) {
        try {
            server->listen_tls(*line.tls_port, *tls);
        } catch (const std::system_error& failure) {
            logger.error("Cannot listen for TLS on ", endpoint_text({address, *line.tls_port}),
                         ": ", failure.code().message());
            return 1;
        }
    }
    // --http-port: bound now, so that a port in use stops the start before the store opens.
    std::unique_ptr<pubsubx::http::HttpService> http;
    if (line.http.port) {
        http = std::make_unique<pubsubx::http::HttpService>(
            io, line.http, logger, [&server] { return server->sys_snapshot(); });
        if (!http->listen()) {
            logger.flush(std::chrono::seconds{1});
            return 1;
        }
    }
    std::unique_ptr<pubsubx::store::DurableStore> store;
    if (!line.data_dir.empty()) {
        // A store file past RLIMIT_FSIZE must fail a write (a full disk), not kill the server.
        std::signal(SIGXFSZ, SIG_IGN);
        try {
            store = std::make_unique<pubsubx::store::DurableStore>(
                pubsubx::store::StoreOptions{line.data_dir, line.durability,
                                             pubsubx::store::backlog_bound(line.broker)},
                broker, logger);
        } catch (const pubsubx::store::StoreError& failure) {
            logger.error("Cannot use the store: ", failure.what());
            logger.flush(std::chrono::seconds{1});
            return 1;
        }
    }
    if (store != nullptr) {
        server->attach_store(store.get());
        // Called on the writer's thread: only a post reaches the event loop.
        store->on_commit(
            [&io, &server] { asio::post(io, [&server] { server->release_held_writes(); }); });
    }
    std::unique_ptr<pubsubx::cluster::ClusterNode> cluster;
    if (!line.cluster_servers.empty()) {
        if (line.node_name.empty()) {
            const auto listening =
                line.server.plain ? server->local_endpoint() : server->tls_local_endpoint();
            line.node_name = host_name() + "-" + std::to_string(listening.port());
        }
        cluster = std::make_unique<pubsubx::cluster::ClusterNode>(
            io, broker, logger, cluster_settings(line), [&server] { server->apply_effects(); });
        std::string cluster_error;
        if (!cluster->start(cluster_error)) {
            logger.error("Cannot join the cluster: ", cluster_error);
            logger.flush(std::chrono::seconds{1});
            return 1;
        }
        server->attach_cluster(cluster.get(), [&cluster] { return cluster->figures(); });
    }
    std::unique_ptr<pubsubx::security::PasswordChecker> password_checker;
    if (!line.users_file.empty()) {
        auto table = load_users(line.users_file, logger);
        if (!table) {
            logger.flush(std::chrono::seconds{1});
            return 2;
        }
        if (line.server.plain && !address.is_loopback()) {
            logger.warning("--users with a plain port on ", line.server.bind_address,
                           ": passwords travel in clear text there (use --tls-port, and "
                           "--no-plain)");
        }
        // After the store: the clients it brought back keep only what their rights allow.
        broker.enable_accounts(std::move(*table), line.allow_anonymous);
        password_checker = std::make_unique<pubsubx::security::PasswordChecker>(io, broker, logger);
        server->attach_login_gate(password_checker.get());
    }
    server->start();
    server->apply_effects();  // the expiry of the clients the store brought back

    const auto counters = [&] {
        return pubsubx::describe(broker.stats()) + " " +
               server_stats_text(server->stats(), server->tls_enabled()) +
               (store != nullptr ? " " + store_figures_text(store->figures()) : "") +
               (cluster != nullptr ? " " + cluster_figures_text(cluster->figures()) : "") +
               " log_lines_dropped=" + std::to_string(logger.lines_dropped()) +
               " clients=" + std::to_string(broker.client_count()) +
               " lost_now=" + std::to_string(broker.lost_client_count()) +
               " queued_bytes=" + std::to_string(broker.total_queued_bytes()) +
               " connections=" + std::to_string(server->session_count());
    };
    // SIGUSR1 prints the counters without stopping (kill -USR1 <pid>).
    asio::signal_set stats_signal{io, SIGUSR1};
    std::function<void()> wait_for_stats_signal = [&] {
        stats_signal.async_wait([&](const std::error_code& wait_error, int) {
            if (!wait_error) {
                logger.always("Counters: ", counters());
                wait_for_stats_signal();
            }
        });
    };
    wait_for_stats_signal();
    // Lines the log pipe could not take wait in the Logger's small buffer: they go out when
    // the reader catches up, checked a few times a second, not only when the next line comes.
    asio::steady_timer log_flush_timer{io};
    std::function<void()> flush_log_now_and_then = [&] {
        log_flush_timer.expires_after(std::chrono::milliseconds{200});
        log_flush_timer.async_wait([&](const std::error_code& wait_error) {
            if (!wait_error) {
                logger.flush(std::chrono::milliseconds{0});
                flush_log_now_and_then();
            }
        });
    };
    flush_log_now_and_then();
    asio::steady_timer store_timer{io};
    std::function<void()> maintain_store_now_and_then = [&] {
        store_timer.expires_after(std::chrono::milliseconds{100});
        store_timer.async_wait([&](const std::error_code& wait_error) {
            if (!wait_error) {
                store->maintain();
                server->release_held_writes();  // a store that cannot commit holds none
                maintain_store_now_and_then();
            }
        });
    };
    if (store != nullptr) {
        maintain_store_now_and_then();
    }
    // SIGHUP reopens the log file, re-reads the configuration file's run-time settings and the
    // users file, and reloads the TLS certificate and key (without a handler, SIGHUP would end
    // the server).
    asio::signal_set reload_signal{io, SIGHUP};
    std::function<void()> wait_for_reload_signal = [&] {
        reload_signal.async_wait([&](const std::error_code& wait_error, int) {
            if (wait_error) {
                return;
            }
            if (log_file != nullptr) {
                reopen_log_file(*log_file, logger);
            }
            if (!line.config_file.empty()) {
                reload_settings(arguments, line, broker, *server, logger);
            }
            if (line.users_file.empty() && tls == nullptr && line.config_file.empty() &&
                log_file == nullptr) {
                logger.info(
                    "SIGHUP: nothing to reload (no --config, --log-file, --users or --tls-port)");
            }
            if (!line.users_file.empty()) {
                reload_users(line.users_file, broker, logger);
                server->apply_effects();
            }
            if (tls != nullptr) {
                reload_tls(*tls, line.tls, logger);
            }
            wait_for_reload_signal();
        });
    };
    wait_for_reload_signal();
    int exit_code = 0;
    asio::signal_set signals{io, SIGINT, SIGTERM};
    signals.async_wait([&](const std::error_code& wait_error, int) {
        if (!wait_error) {
            logger.info("Shutting down; ", counters());
            stats_signal.cancel();
            reload_signal.cancel();
            log_flush_timer.cancel();
            store_timer.cancel();
            if (http != nullptr) {
                http->stop();  // the timer, and the HTTP threads (joined, or left behind)
            }
            server->stop();
            if (cluster != nullptr) {
                cluster->stop();  // gives up its lease and interest; its clients stay here
            }
            if (store == nullptr) {
                io.stop();
                return;
            }
            // The cancelled writes complete first (their handlers are queued already), then the
            // store keeps what they did not send, with every other queued message.
            server->interrupt_writes();
            asio::post(io, [&] {
                if (!store->close()) {
                    exit_code = 1;  // what the store could not keep is lost: say so
                }
                io.stop();
            });
        }
    });

    const std::string where =
        endpoint_text(line.server.plain ? server->local_endpoint() : server->tls_local_endpoint());
    const char* started = line.server.plain ? "Server started, listening on "
                                            : "Server started, TLS only (--no-plain), TLS "
                                              "listening on ";
    if (address.is_loopback()) {
        logger.always(started, where,
                      " (local clients only; use --bind 0.0.0.0 to accept remote clients)");
    } else {
        logger.always(started, where);
    }
    if (tls != nullptr && line.server.plain) {
        logger.always("TLS listening on ", endpoint_text(server->tls_local_endpoint()));
    }
    if (http != nullptr) {
        http->start();
    }
    io.run();
    if (cluster != nullptr) {
        cluster.reset();
        pubsubx::cluster::close_nats_library();
    }
    logger.flush(std::chrono::seconds{1});
    if (http != nullptr && http->left_threads_behind()) {
        // An HTTP client still holds one of httplib's threads, which may read httplib's static
        // data: the process ends here, without the static destructors that would free it. The
        // store is closed and the log flushed already.
        std::_Exit(exit_code);
    }
    return exit_code;
}
