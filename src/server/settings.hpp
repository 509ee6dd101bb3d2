// The server's settings: the command line and the configuration file it names (--config,
// TOML through CLI11's own configuration support), read at start and again at SIGHUP. Plain
// data and CLI11, no Asio: main.cpp turns them into the parts' own options.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "http/http_options.hpp"
#include "pubsubx/core/config.hpp"
#include "pubsubx/log.hpp"
#include "server_options.hpp"
#include "store/sqlite_store.hpp"
#include "tls/server_context.hpp"

namespace pubsubx::server {

// --log-timestamps: `automatic` stamps each line unless systemd's journal reads it.
enum class LogTimestamps { automatic, on, off };

struct Settings {
    ServerOptions server;
    BrokerConfig broker;
    double lost_timeout_seconds = 60.0;
    double slow_consumer_grace_seconds = 10.0;
    double connect_timeout_seconds = 10.0;
    double write_timeout_seconds = 30.0;
    double sys_interval_seconds = 10.0;
    std::string data_dir;  // empty: nothing is kept across restarts
    store::Durability durability = store::Durability::normal;
    std::vector<std::string> cluster_servers;  // empty: a single broker
    std::string cluster_name = "pubsubx";
    std::string node_name;  // empty: <host name>-<port>
    double cluster_lease_seconds = 10.0;
    double handover_window_seconds = 0.05;
    std::chrono::milliseconds cluster_lease{10'000};  // from the seconds, at least 300 ms
    std::chrono::milliseconds handover_window{50};    // from the seconds
    std::string users_file;  // empty: no accounts, anyone may connect under a free name
    bool allow_anonymous = false;
    std::optional<std::uint16_t> tls_port;  // none: no TLS
    tls::ServerTlsFiles tls;
    bool no_plain = false;
    bool verbose = false;
    bool quiet = false;
    std::string log_file;  // empty: standard output
    LogTimestamps log_timestamps = LogTimestamps::automatic;
    std::string config_file;  // empty: the command line alone
    bool print_config = false;
    http::HttpOptions http;  // --http-port, --http-bind (src/http/)
    // Every key's value as the configuration file would set it, as read: what SIGHUP compares.
    std::map<std::string, std::string> effective;

    LogLevel log_level() const;
};

// Reads the command line and the configuration file it names, and fills in the durations.
// Returns the exit code when the program ends here: 0 after --help, --version or
// --print-config (written to standard output), 2 after an error (written to standard error,
// naming the file, line and key when the configuration file is at fault).
std::optional<int> read_settings(const std::vector<std::string>& arguments, Settings& settings);

// SIGHUP: the same command line read again, with the configuration file as it is now. False
// and `error` when they cannot be used.
bool reread_settings(const std::vector<std::string>& arguments, Settings& settings,
                     std::string& error);

// A setting whose value differs between what is in force and what was read again.
struct SettingChange {
    std::string key;  // the option's long name, as in the configuration file
    std::string in_force;
    std::string read;
    bool at_run_time;  // false: it takes effect only at a restart
};

std::vector<SettingChange> compare_settings(const Settings& in_force, const Settings& read);

// The configuration keys SIGHUP applies without a restart.
const std::vector<std::string>& run_time_keys();

// `in_force` takes the values of `read` for the run-time keys, and keeps the others.
void keep_run_time_settings(Settings& in_force, const Settings& read);

// Seconds as the clock's duration; a positive count never becomes 0 (which means "off" or
// "keep nothing") by rounding.
Clock::duration duration_from_seconds(double count);

}  // namespace pubsubx::server
