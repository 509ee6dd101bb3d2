#include "settings.hpp"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <sstream>

#include "pubsubx/version.hpp"

namespace pubsubx::server {

namespace {

// The longest duration any time option takes: one year. It is far from overflowing when a
// steady_clock time point (nanoseconds since boot, in 64 bits: 292 years) is added to it.
constexpr double kMaxSeconds = 365.0 * 24 * 3600;

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

// CLI11 converts a size with strtoull, which reads "-1" or a number past 64 bits as the largest
// one: "no limit". Only digits are a count.
std::string check_count(const std::string& text) {
    if (text.empty() || text.size() > 19 ||
        text.find_first_not_of("0123456789") != std::string::npos) {
        return "'" + text + "' is not a whole number from 0 to 9999999999999999999";
    }
    return {};
}

void add_limit(CLI::App& app, const std::string& name, std::size_t& value,
               const std::string& help) {
    app.add_option(name, value, help + " (0: no limit)")
        ->check(CLI::Validator{check_count, "COUNT"})
        ->capture_default_str();
}

// An option that takes one of a few words. Its value stays the word (a transformer would
// leave the enum's number, which --print-config would then write).
template <typename Value>
void add_choice(CLI::App& app, const std::string& name, Value& value,
                const std::vector<std::pair<std::string, Value>>& choices,
                const std::string& help) {
    std::vector<std::string> words;
    std::string default_word;
    for (const auto& [word, choice] : choices) {
        words.push_back(word);
        if (choice == value) {
            default_word = word;
        }
    }
    app.add_option_function<std::string>(
           name,
           [&value, choices](const std::string& word) {
               for (const auto& [known, choice] : choices) {
                   if (known == word) {
                       value = choice;
                   }
               }
           },
           help)
        ->transform(CLI::IsMember(words, CLI::ignore_case))
        ->default_str(default_word);
}

// Where the log goes and how its lines start (docs/operations.md, Logs).
void define_log_options(CLI::App& app, Settings& line) {
    app.add_flag("-v,--verbose", line.verbose, "Log every message; changes on SIGHUP");
    // Not excludes(): `verbose = false` in a configuration file counts as given to CLI11.
    app.add_flag("-q,--quiet", line.quiet, "Log errors only; changes on SIGHUP");
    app.add_option("--log-file", line.log_file,
                   "Append the log to this file instead of standard output; reopened on SIGHUP "
                   "(logrotate)");
    add_choice(app, "--log-timestamps", line.log_timestamps,
               {{"auto", LogTimestamps::automatic},
                {"on", LogTimestamps::on},
                {"off", LogTimestamps::off}},
               "Start each log line with an RFC 3339 timestamp (UTC, milliseconds): 'auto' "
               "does unless systemd's journal reads standard output (it adds its own), 'off' "
               "gives the original lines; changes on SIGHUP");
}

// --tls-port and the options that go with it (docs/security.md).
void define_tls_options(CLI::App& app, Settings& line) {
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

void define_options(CLI::App& app, Settings& line) {
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
    add_choice(app, "--durability", line.durability,
               {{"normal", store::Durability::normal}, {"full", store::Durability::full}},
               "With --data-dir: 'normal' loses nothing on a crash of the server, 'full' also "
               "nothing committed on a power cut (docs/durability.md)");
    auto* cluster =
        app.add_option("--cluster", line.cluster_servers,
                       "Act as one broker with the other nodes on these NATS servers "
                       "(nats://host:port, comma-separated; nats-server with JetStream, -js)")
            ->delimiter(',');
    app.add_option("--cluster-name", line.cluster_name,
                   "With --cluster: the cluster's name (clusters on one NATS stay apart)")
        ->needs(cluster)
        ->capture_default_str();
    app.add_option("--node-name", line.node_name,
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
    define_log_options(app, line);
    http::define_http_options(app, line.http);
    app.set_config("--config", "",
                   "TOML file of settings: each option by its long name (lost-timeout = 60, "
                   "bind = \"0.0.0.0\", port = 12000); the command line wins; run-time "
                   "settings are read again on SIGHUP")
        ->check(CLI::ExistingFile);
    app.allow_config_extras(false);
    app.add_flag("--print-config", line.print_config,
                 "Write the effective configuration (command line and --config file) in the "
                 "configuration file's format, and exit")
        ->configurable(false);
    app.set_version_flag("--version", std::string{"pubsubx-server "} + kVersion);
}

// The options in seconds become durations, and a 0 frame limit means none.
void apply_durations(Settings& line) {
    line.broker.lost_timeout = duration_from_seconds(line.lost_timeout_seconds);
    line.broker.slow_consumer_grace = duration_from_seconds(line.slow_consumer_grace_seconds);
    line.server.connect_timeout = duration_from_seconds(line.connect_timeout_seconds);
    line.server.write_timeout = duration_from_seconds(line.write_timeout_seconds);
    line.server.sys_interval = duration_from_seconds(line.sys_interval_seconds);
    line.server.plain = !line.no_plain;
    line.cluster_lease = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::max(duration_from_seconds(line.cluster_lease_seconds),
                 Clock::duration{std::chrono::milliseconds{300}}));
    line.handover_window = std::chrono::duration_cast<std::chrono::milliseconds>(
        duration_from_seconds(line.handover_window_seconds));
    if (line.server.max_frame == 0) {
        line.server.max_frame = std::numeric_limits<std::size_t>::max();
    }
}

// Where each key of a configuration file is, for errors that name its line. CLI11 reads the
// file itself and keeps no line numbers, so the file is scanned once more for them: a
// `key = value` line, or a bare word that is no TOML at all. A `[table]` is refused here.
class KeyLines {
  public:
    // False and `error` when a key is set twice (CLI11 would keep one silently).
    bool scan(const std::string& path, std::string& error) {
        std::ifstream file{path};
        std::string text;
        std::size_t number = 0;
        while (std::getline(file, text)) {
            ++number;
            const std::string line = trimmed(text);
            if (line.empty() || line.front() == '#') {
                continue;
            }
            if (line.front() == '[') {
                error = path + " line " + std::to_string(number) +
                        ": tables are not used here: every key goes at the top level";
                return false;
            }
            const std::string key = unquoted(trimmed(line.substr(0, line.find('='))));
            if (const std::string why = unreadable_value(line); !why.empty()) {
                error = path + " line " + std::to_string(number) + ": '" + key + "': " + why;
                return false;
            }
            const auto [where, added] = lines_.emplace(key, number);
            if (!added) {
                error = path + " line " + std::to_string(number) + ": '" + key +
                        "' is set again (first on line " + std::to_string(where->second) + ")";
                return false;
            }
        }
        return true;
    }

    // A CLI11 error about one of the file's keys, said with the key's line; "" when the error
    // is about none of them (or about a key the command line set, which wins).
    std::string locate(const std::string& message, const std::vector<std::string>& arguments,
                       const std::string& path) const {
        for (const auto& [key, number] : lines_) {
            if (on_command_line(arguments, key)) {
                continue;
            }
            const std::string where = path + " line " + std::to_string(number) + ": ";
            if (message == "INI was not able to parse " + key) {
                return where + "unknown key '" + key + "' (pubsubx-server --help lists them)";
            }
            for (const std::string& prefix : {"--" + key + ": ", key + ": "}) {
                if (message.starts_with(prefix)) {
                    return where + "'" + key + "': " + message.substr(prefix.size());
                }
            }
            if (names(message, "--" + key)) {
                return where + "'" + key + "': " + message;
            }
        }
        return {};
    }

  private:
    // What CLI11 2.1's reader would get wrong in a `key = value` line, silently: a `#` in a
    // quoted value (it cuts the value there, taking the rest as a comment) and an array that
    // goes on over several lines. The value is scanned as TOML reads it: quotes (with `\"`
    // escapes in double quotes), a comment from a `#` outside them, brackets outside them.
    static std::string unreadable_value(const std::string& line) {
        const auto equals = line.find('=');
        if (equals == std::string::npos) {
            return {};
        }
        const std::string value = trimmed(line.substr(equals + 1));
        char quote = 0;
        int open_brackets = 0;
        for (std::size_t at = 0; at < value.size(); ++at) {
            const char c = value[at];
            if (quote != 0) {
                if (c == '\\' && quote == '"') {
                    ++at;  // an escaped character, a quote among them
                } else if (c == quote) {
                    quote = 0;
                } else if (c == '#') {
                    return "a '#' inside a quoted value is not read here (it would cut the "
                           "value short): give this one on the command line";
                }
            } else if (c == '"' || c == '\'') {
                quote = c;
            } else if (c == '#') {
                break;  // a comment after the value
            } else if (c == '[') {
                ++open_brackets;
            } else if (c == ']') {
                --open_brackets;
            }
        }
        if (value.starts_with("[") && open_brackets > 0) {
            return "an array must be written on one line";
        }
        return {};
    }

    static std::string trimmed(const std::string& text) {
        const auto first = text.find_first_not_of(" \t\r");
        const auto last = text.find_last_not_of(" \t\r");
        return first == std::string::npos ? std::string{} : text.substr(first, last - first + 1);
    }
    static std::string unquoted(const std::string& key) {
        if (key.size() >= 2 && (key.front() == '"' || key.front() == '\'') &&
            key.back() == key.front()) {
            return key.substr(1, key.size() - 2);
        }
        return key;
    }
    // `--max-queue` in "--max-queue: ..." but not in "--max-queue-x".
    static bool names(const std::string& message, const std::string& option) {
        for (auto at = message.find(option); at != std::string::npos;
             at = message.find(option, at + 1)) {
            const std::size_t end = at + option.size();
            if (end == message.size() ||
                (std::isalnum(static_cast<unsigned char>(message[end])) == 0 &&
                 message[end] != '-' && message[end] != '_')) {
                return true;
            }
        }
        return false;
    }
    static bool on_command_line(const std::vector<std::string>& arguments, const std::string& key) {
        const std::string option = "--" + key;
        return std::any_of(arguments.begin(), arguments.end(), [&](const std::string& argument) {
            return argument == option || argument.starts_with(option + "=");
        });
    }

    std::map<std::string, std::size_t> lines_;
};

// "key=value" lines of CLI11's configuration output, as a map.
std::map<std::string, std::string> effective_values(const CLI::App& app) {
    std::map<std::string, std::string> values;
    std::istringstream lines{app.config_to_str(true, false)};
    std::string line;
    while (std::getline(lines, line)) {
        const auto equals = line.find('=');
        if (equals != std::string::npos && !line.starts_with("#")) {
            values[line.substr(0, equals)] = line.substr(equals + 1);
        }
    }
    return values;
}

// --print-config: CLI11's configuration text, read back as a configuration file means the
// same. What is not set (`key=""`) is a comment, and so is the default of an option that needs
// another (`no-plain=false` without a --tls-port would be refused).
std::string printable_config(const CLI::App& app) {
    std::istringstream lines{app.config_to_str(true, true)};
    std::string text;
    std::string line;
    while (std::getline(lines, line)) {
        const auto equals = line.find('=');
        if (equals != std::string::npos && !line.starts_with("#")) {
            const CLI::Option* option = app.get_option_no_throw("--" + line.substr(0, equals));
            if (line.ends_with("=\"\"")) {
                line = "#" + line.substr(0, line.size() - 2) + " (not set)";
            } else if (line.find('#', equals) != std::string::npos) {
                line =
                    "#" + line + " (a '#' in a value is not read from a file: command line only)";
            } else if (option != nullptr && option->count() == 0 && !option->get_needs().empty()) {
                line = "#" + line + " (the default)";
            }
        }
        text += line + "\n";
    }
    return text;
}

// The configuration file named on the command line, before CLI11 reads it.
std::string config_file_argument(const std::vector<std::string>& arguments) {
    for (std::size_t i = 1; i < arguments.size(); ++i) {
        if (arguments[i] == "--config" && i + 1 < arguments.size()) {
            return arguments[i + 1];
        }
        if (arguments[i].starts_with("--config=")) {
            return arguments[i].substr(9);
        }
    }
    return {};
}

// Parses into `settings` (with its effective values) and returns the app that did it; throws
// CLI::ParseError, with the file's line in the message of an error that the configuration
// file caused.
std::unique_ptr<CLI::App> parse(const std::vector<std::string>& arguments, Settings& settings) {
    auto app = std::make_unique<CLI::App>(
        "PubSubX broker: publish/subscribe over TCP, keeping the messages of lost clients until "
        "they reconnect",
        "pubsubx-server");
    define_options(*app, settings);
    const std::string path = config_file_argument(arguments);
    KeyLines key_lines;
    std::string error;
    if (!path.empty() && std::ifstream{path} && !key_lines.scan(path, error)) {
        throw CLI::ConfigError(error);
    }
    // CLI11 takes the arguments in reverse, without the program's name.
    std::vector<std::string> reversed(arguments.rbegin(), arguments.rend() - 1);
    try {
        app->parse(reversed);
    } catch (const CLI::CallForHelp&) {
        throw;
    } catch (const CLI::CallForAllHelp&) {
        throw;
    } catch (const CLI::CallForVersion&) {
        throw;
    } catch (const CLI::ParseError& failure) {
        const std::string where =
            path.empty() ? "" : key_lines.locate(failure.what(), arguments, path);
        if (where.empty()) {
            throw;
        }
        throw CLI::ConfigError(where);
    }
    if (settings.verbose && settings.quiet) {
        throw CLI::ConfigError("--verbose excludes --quiet");
    }
    apply_durations(settings);
    settings.config_file = path;
    settings.effective = effective_values(*app);
    return app;
}

}  // namespace

Clock::duration duration_from_seconds(double count) {
    const auto duration =
        std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(count));
    return count > 0 && duration == Clock::duration::zero() ? Clock::duration{1} : duration;
}

void keep_run_time_settings(Settings& in_force, const Settings& read) {
    in_force.verbose = read.verbose;
    in_force.quiet = read.quiet;
    in_force.log_timestamps = read.log_timestamps;
    in_force.lost_timeout_seconds = read.lost_timeout_seconds;
    in_force.slow_consumer_grace_seconds = read.slow_consumer_grace_seconds;
    in_force.connect_timeout_seconds = read.connect_timeout_seconds;
    in_force.write_timeout_seconds = read.write_timeout_seconds;
    adopt_run_time_limits(in_force.broker, read.broker);
    adopt_run_time_limits(in_force.server, read.server);
}

LogLevel Settings::log_level() const {
    if (quiet) {
        return LogLevel::quiet;
    }
    return verbose ? LogLevel::verbose : LogLevel::info;
}

std::optional<int> read_settings(const std::vector<std::string>& arguments, Settings& settings) {
    try {
        const auto app = parse(arguments, settings);
        if (settings.print_config) {
            std::cout << printable_config(*app);
            return 0;
        }
        return std::nullopt;
    } catch (const CLI::ParseError& failure) {
        CLI::App app{"", "pubsubx-server"};
        Settings unused;
        define_options(app, unused);
        // --help and --version end here with 0; every error in the settings is exit code 2.
        return app.exit(failure) == 0 ? 0 : 2;
    }
}

bool reread_settings(const std::vector<std::string>& arguments, Settings& settings,
                     std::string& error) {
    try {
        parse(arguments, settings);
        return true;
    } catch (const CLI::ParseError& failure) {
        error = failure.what();
        return false;
    }
}

const std::vector<std::string>& run_time_keys() {
    static const std::vector<std::string> keys{
        "verbose",         "quiet",         "log-timestamps",      "max-queue",
        "max-total-queue", "max-topics",    "max-topic-length",    "max-lost-clients",
        "lost-timeout",    "max-frame",     "slow-consumer-grace", "max-connections",
        "connect-timeout", "write-timeout", "require-secret"};
    return keys;
}

std::vector<SettingChange> compare_settings(const Settings& in_force, const Settings& read) {
    std::vector<SettingChange> changes;
    const auto& keys = run_time_keys();
    for (const auto& [key, value] : read.effective) {
        const auto old = in_force.effective.find(key);
        const std::string was = old == in_force.effective.end() ? "" : old->second;
        if (was != value) {
            changes.push_back(
                {key, was, value, std::find(keys.begin(), keys.end(), key) != keys.end()});
        }
    }
    return changes;
}

}  // namespace pubsubx::server
