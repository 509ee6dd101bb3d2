// pubsubx-server: parses the command line, starts the broker and runs it until SIGINT/SIGTERM.
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
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
#include "pubsubx/broker.hpp"
#include "pubsubx/log.hpp"
#include "pubsubx/version.hpp"
#include "security/password_checker.hpp"
#include "security/users_file.hpp"
#include "server.hpp"
#include "store/durable_store.hpp"
#include "tls/server_context.hpp"

namespace {

using pubsubx::server::endpoint_text;

struct CommandLine {
    pubsubx::server::ServerOptions server;
    pubsubx::BrokerConfig broker;
    double lost_timeout_seconds = 60.0;
    double slow_consumer_grace_seconds = 10.0;
    double connect_timeout_seconds = 10.0;
    double write_timeout_seconds = 30.0;
    double sys_interval_seconds = 10.0;
    std::string data_dir;  // empty: nothing is kept across restarts
    pubsubx::store::Durability durability = pubsubx::store::Durability::normal;
    std::vector<std::string> cluster_servers;  // empty: a single broker
    pubsubx::cluster::ClusterSettings cluster;
    double cluster_lease_seconds = 10.0;
    double handover_window_seconds = 0.05;
    std::string users_file;  // empty: no accounts, anyone may connect under a free name
    bool allow_anonymous = false;
    std::optional<std::uint16_t> tls_port;  // none: no TLS
    pubsubx::tls::ServerTlsFiles tls;
    bool no_plain = false;
    bool verbose = false;
    bool quiet = false;
};

// The longest duration any time option takes: one year. It is far from overflowing when a
// steady_clock time point (nanoseconds since boot, in 64 bits: 292 years) is added to it.
constexpr double kMaxSeconds = 365.0 * 24 * 3600;

// A positive option never becomes 0 (which means "off" or "keep nothing") by rounding.
pubsubx::Clock::duration seconds(double count) {
    const auto duration =
        std::chrono::duration_cast<pubsubx::Clock::duration>(std::chrono::duration<double>(count));
    return count > 0 && duration == pubsubx::Clock::duration::zero() ? pubsubx::Clock::duration{1}
                                                                     : duration;
}

// Checked before CLI11 converts the text: its own range checks let NaN through, and a value
// past what the clock holds used to overflow silently into "keep nothing".
std::string check_seconds(const std::string& text) {
    char* end = nullptr;
    errno = 0;
    const double value = std::strtod(text.c_str(), &end);
    if (errno == ERANGE && value == 0.0) {
        return "'" + text + "' is too small a number of seconds (use 0 for none)";
    }
    if (text.empty() || end != text.c_str() + text.size() || !std::isfinite(value) || value < 0 ||
        value > kMaxSeconds) {
        return "'" + text + "' is not a number of seconds from 0 to 31536000 (one year)";
    }
    return {};
}

CLI::Option* add_seconds(CLI::App& app, const std::string& name, double& value,
                         const std::string& help) {
    return app.add_option(name, value, help + "; at most 31536000 (one year)")
        ->check(CLI::Validator{check_seconds, "SECONDS"})
        ->capture_default_str();
}

// An interval between publications of the statistics is off or at least 10 ms: a shorter one
// would keep the broker busy publishing them. Runs after check_seconds.
std::string check_sys_interval(const std::string& text) {
    const double value = std::strtod(text.c_str(), nullptr);
    if (value != 0 && value < 0.01) {
        return "'" + text + "' is too short an interval: 0 (off) or at least 0.01 seconds";
    }
    return {};
}

void add_limit(CLI::App& app, const std::string& name, std::size_t& value,
               const std::string& help) {
    app.add_option(name, value, help + " (0: no limit)")->capture_default_str();
}

// --tls-port and the options that go with it (docs/security.md).
void define_tls_options(CLI::App& app, CommandLine& line) {
    auto* tls_port =
        app.add_option("--tls-port", line.tls_port,
                       "Also listen for TLS connections on this port (0: any free port); needs "
                       "--tls-cert and --tls-key")
            ->check(CLI::Range(0, 65535));
    auto* cert = app.add_option("--tls-cert", line.tls.certificate_chain,
                                "With --tls-port: the server's certificate chain (PEM: the "
                                "certificate, then any intermediates); reloaded on SIGHUP")
                     ->check(CLI::ExistingFile)
                     ->needs(tls_port);
    auto* key = app.add_option("--tls-key", line.tls.private_key,
                               "With --tls-port: the certificate's private key (PEM, not "
                               "encrypted); reloaded on SIGHUP")
                    ->check(CLI::ExistingFile)
                    ->needs(tls_port);
    tls_port->needs(cert, key);
    auto* ca = app.add_option("--tls-ca", line.tls.client_ca,
                              "With --tls-port: CA certificates (PEM) that client certificates "
                              "must chain to; a client may then present one, and an expired "
                              "or untrusted one is refused")
                   ->check(CLI::ExistingFile)
                   ->needs(tls_port);
    auto* require =
        app.add_flag("--tls-require-client-cert", line.tls.require_client_certificate,
                     "Mutual TLS: a TLS client without a certificate from --tls-ca is refused")
            ->needs(ca);
    app.add_flag("--tls-name-from-cert", line.server.tls_names_from_certificates,
                 "With --tls-require-client-cert: a TLS client's CONNECT name must be its "
                 "certificate's common name or one of its DNS names, else 'ERROR: Not "
                 "authorized'")
        ->needs(require);
    app.add_flag("--no-plain", line.no_plain,
                 "TLS only: no plain port (needs --tls-port; PORT is then ignored)")
        ->needs(tls_port);
}

void define_options(CLI::App& app, CommandLine& line) {
    app.add_option("port", line.server.port, "TCP port to listen on (0: any free port)")
        ->check(CLI::Range(0, 65535))
        ->capture_default_str();
    define_tls_options(app, line);
    app.add_option("--bind", line.server.bind_address,
                   "Address to listen on (0.0.0.0 or :: accepts remote clients)")
        ->capture_default_str();
    add_seconds(app, "--lost-timeout", line.lost_timeout_seconds,
                "Seconds a lost client's subscriptions and messages are kept (0: none)");
    add_limit(app, "--max-queue", line.broker.max_queue_bytes,
              "Bytes queued per client; when full, the oldest messages are dropped");
    add_limit(app, "--max-total-queue", line.broker.max_total_queue_bytes,
              "Bytes queued for all clients together (lost clients: at most 3/4 of it); when "
              "reached, the receiving client's oldest messages are dropped");
    add_limit(app, "--max-frame", line.server.max_frame,
              "Largest frame accepted, in bytes; a longer one closes the connection");
    add_limit(app, "--max-connections", line.server.max_connections,
              "Open connections; beyond it a new one gets 'ERROR: Server is full' and is closed; "
              "lowered to fit the file descriptor limit");
    add_limit(app, "--max-topics", line.broker.max_topics_per_client,
              "Subscriptions per client; beyond it SUBSCRIBE gets an error frame");
    add_limit(app, "--max-topic-length", line.broker.max_topic_length,
              "Bytes in a topic name; a longer one gets an error frame");
    app.add_option("--max-topic-levels", line.broker.max_topic_levels,
                   "Levels in a wildcard filter (`+`, `#`); a deeper one gets an error frame "
                   "(1 to 1024; exact topics are not limited)")
        ->check(CLI::Range(1, 1024))
        ->capture_default_str();
    add_limit(app, "--max-lost-clients", line.broker.max_lost_clients,
              "Lost clients kept at once; beyond it the longest-lost one is removed");
    add_seconds(app, "--slow-consumer-grace", line.slow_consumer_grace_seconds,
                "Seconds a connected client's queue may overflow before it is cut off and "
                "becomes lost (0: never)");
    add_seconds(app, "--connect-timeout", line.connect_timeout_seconds,
                "Seconds a new connection has to send CONNECT (0: no limit)");
    add_seconds(app, "--write-timeout", line.write_timeout_seconds,
                "Seconds a write may wait for a peer that stopped reading before its "
                "connection is closed and its client lost (0: no limit)");
    add_seconds(app, "--sys-interval", line.sys_interval_seconds,
                "Seconds between publications of the broker's statistics on $SYS/broker/... "
                "topics (0: none; else at least 0.01)")
        ->check(CLI::Validator{check_sys_interval, ""});
    app.add_option("--keepalive", line.server.keepalive_idle_seconds,
                   "Idle seconds before TCP keepalive probes a silent connection (0: off)")
        ->check(CLI::Range(0, 32767))
        ->capture_default_str();
    app.add_flag("--require-secret", line.broker.require_secret,
                 "Refuse CONNECTs without a session-resume secret (CONNECT <name> <secret>)");
    app.add_option("--data-dir", line.data_dir,
                   "Directory of the durable store: clients, their subscriptions and the "
                   "messages of lost clients survive a restart or a crash (default: none, "
                   "nothing is kept)");
    app.add_option("--durability", line.durability,
                   "With --data-dir: 'normal' loses nothing on a crash of the server, 'full' "
                   "also nothing committed on a power cut (docs/durability.md)")
        ->transform(CLI::CheckedTransformer(
            std::map<std::string, pubsubx::store::Durability>{
                {"normal", pubsubx::store::Durability::normal},
                {"full", pubsubx::store::Durability::full}},
            CLI::ignore_case))
        ->default_str("normal");
    auto* cluster =
        app.add_option("--cluster", line.cluster_servers,
                       "Act as one broker with the other nodes on these NATS servers "
                       "(nats://host:port, comma-separated; nats-server with JetStream, -js)")
            ->delimiter(',');
    app.add_option("--cluster-name", line.cluster.cluster,
                   "With --cluster: the cluster's name (clusters on one NATS stay apart)")
        ->needs(cluster)
        ->capture_default_str();
    app.add_option("--node-name", line.cluster.node,
                   "With --cluster: this node's name, unique in the cluster (default: "
                   "<host name>-<port>)")
        ->needs(cluster);
    add_seconds(app, "--cluster-lease", line.cluster_lease_seconds,
                "With --cluster: seconds after which a node that stopped is gone and its "
                "names are free")
        ->needs(cluster);
    add_seconds(app, "--handover-window", line.handover_window_seconds,
                "With --cluster: seconds a node waits for messages still on their way before "
                "it hands a client over to another node")
        ->needs(cluster);
    auto* users = app.add_option("--users", line.users_file,
                                 "Users file: only its users may connect, each with its password "
                                 "and topic permissions (pubsubx-passwd makes it; re-read on "
                                 "SIGHUP; docs/security.md)");
    app.add_flag("--allow-anonymous", line.allow_anonymous,
                 "With --users: names not in the file connect too, with the anonymous "
                 "permissions ('*' lines)")
        ->needs(users);
    auto* verbose = app.add_flag("-v,--verbose", line.verbose, "Log every message");
    app.add_flag("-q,--quiet", line.quiet, "Log errors only")->excludes(verbose);
    app.set_version_flag("--version", std::string{"pubsubx-server "} + pubsubx::kVersion);
}

// The options in seconds become durations, and a 0 frame limit means none.
void apply_durations(CommandLine& line) {
    line.broker.lost_timeout = seconds(line.lost_timeout_seconds);
    line.broker.slow_consumer_grace = seconds(line.slow_consumer_grace_seconds);
    line.server.connect_timeout = seconds(line.connect_timeout_seconds);
    line.server.write_timeout = seconds(line.write_timeout_seconds);
    line.server.sys_interval = seconds(line.sys_interval_seconds);
    line.server.plain = !line.no_plain;
    line.cluster.servers = line.cluster_servers;
    line.cluster.lease = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::max(seconds(line.cluster_lease_seconds),
                 pubsubx::Clock::duration{std::chrono::milliseconds{300}}));
    line.cluster.handover_window = std::chrono::duration_cast<std::chrono::milliseconds>(
        seconds(line.handover_window_seconds));
    if (line.server.max_frame == 0) {
        line.server.max_frame = std::numeric_limits<std::size_t>::max();
    }
}

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
void fit_connections_to_descriptors(std::size_t& max_connections, rlim_t descriptor_limit,
                                    pubsubx::Logger& logger) {
    if (descriptor_limit == RLIM_INFINITY || max_connections == 0) {
        return;
    }
    const rlim_t room =
        descriptor_limit > kDescriptorHeadroom ? descriptor_limit - kDescriptorHeadroom : 1;
    if (max_connections > room) {
        logger.always("--max-connections lowered from ", max_connections, " to ", room,
                      ": the file descriptor limit is ", descriptor_limit, " (ulimit -n)");
        max_connections = static_cast<std::size_t>(room);
    }
}

pubsubx::LogLevel log_level(const CommandLine& line) {
    if (line.quiet) {
        return pubsubx::LogLevel::quiet;
    }
    return line.verbose ? pubsubx::LogLevel::verbose : pubsubx::LogLevel::info;
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

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{
        "PubSubX broker: publish/subscribe over TCP, keeping the messages of lost "
        "clients until they reconnect"};
    CommandLine line;
    define_options(app, line);
    pubsubx::http::HttpOptions http_options;  // --http-port, --http-bind (src/http/)
    pubsubx::http::define_http_options(app, http_options);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& failure) {
        // --help and --version end here with 0; every command-line error is exit code 2.
        return app.exit(failure) == 0 ? 0 : 2;
    }

    apply_durations(line);
    // A log reader that went away must not kill the broker: its writes fail with EPIPE and the
    // Logger counts the lines it drops.
    std::signal(SIGPIPE, SIG_IGN);
    // A reload asked for while the server starts (the store may take a while to load) must not
    // end it: SIGHUP is handled once the server runs.
    std::signal(SIGHUP, SIG_IGN);
    const NonBlockingLog non_blocking_log{STDOUT_FILENO};
    pubsubx::Logger logger{log_level(line), STDOUT_FILENO};
    fit_connections_to_descriptors(line.server.max_connections, raise_descriptor_limit(), logger);
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
    if (http_options.port) {
        http = std::make_unique<pubsubx::http::HttpService>(
            io, http_options, logger, [&server] { return server->sys_snapshot(); });
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
        if (line.cluster.node.empty()) {
            const auto listening =
                line.server.plain ? server->local_endpoint() : server->tls_local_endpoint();
            line.cluster.node = host_name() + "-" + std::to_string(listening.port());
        }
        cluster = std::make_unique<pubsubx::cluster::ClusterNode>(
            io, broker, logger, line.cluster, [&server] { server->apply_effects(); });
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
    // SIGHUP re-reads the users file and reloads the TLS certificate and key (without a
    // handler, SIGHUP would end the server).
    asio::signal_set reload_signal{io, SIGHUP};
    std::function<void()> wait_for_reload_signal = [&] {
        reload_signal.async_wait([&](const std::error_code& wait_error, int) {
            if (wait_error) {
                return;
            }
            if (line.users_file.empty() && tls == nullptr) {
                logger.info("SIGHUP: nothing to reload (no --users, no --tls-port)");
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
                http->stop();  // the timer, and the HTTP thread joined
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
    return exit_code;
}
