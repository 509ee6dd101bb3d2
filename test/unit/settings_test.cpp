// The server's settings (server/settings.hpp): the command line and the configuration file,
// read as at start and again as at SIGHUP; and the log file's writer (server/log_file.hpp).
#include "settings.hpp"

#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "log_file.hpp"

using namespace pubsubx;
using namespace pubsubx::server;

namespace {

// A file under /tmp with `text`, removed at the end.
struct TemporaryFile {
    explicit TemporaryFile(const std::string& text) {
        char name[] = "/tmp/pubsubx-settings-XXXXXX";
        const int fd = ::mkstemp(name);
        REQUIRE(fd >= 0);
        ::close(fd);
        path = name;
        write(text);
    }
    ~TemporaryFile() { std::remove(path.c_str()); }
    void write(const std::string& text) const { std::ofstream{path, std::ios::trunc} << text; }
    std::string read() const {
        std::stringstream text;
        text << std::ifstream{path}.rdbuf();
        return text.str();
    }
    std::string path;
};

std::vector<std::string> with_config(const TemporaryFile& file,
                                     std::vector<std::string> more = {}) {
    std::vector<std::string> arguments{"pubsubx-server", "--config", file.path};
    arguments.insert(arguments.end(), more.begin(), more.end());
    return arguments;
}

std::string reread_error(const TemporaryFile& file, std::vector<std::string> more = {}) {
    Settings settings;
    std::string error;
    CHECK_FALSE(reread_settings(with_config(file, std::move(more)), settings, error));
    return error;
}

}  // namespace

TEST_CASE("a configuration file sets options by their long names; the command line wins") {
    const TemporaryFile file{
        "# comment\n"
        "port = 4222\n"
        "\"bind\" = \"0.0.0.0\"\n"
        "lost-timeout = 1.5\n"
        "max-queue = 4096\n"
        "cluster = [\"nats://a:4222\", \"nats://b:4222\"]  # two ] [\n"
        "durability = \"FULL\"\n"
        "log-timestamps = \"off\"\n"
        "verbose = true\n"};
    Settings settings;
    std::string error;
    REQUIRE(reread_settings(with_config(file, {"--max-queue", "100"}), settings, error));
    CHECK(settings.server.port == 4222);
    CHECK(settings.server.bind_address == "0.0.0.0");
    CHECK(settings.broker.lost_timeout == std::chrono::milliseconds{1500});
    CHECK(settings.broker.max_queue_bytes == 100);
    CHECK(settings.cluster_servers == std::vector<std::string>{"nats://a:4222", "nats://b:4222"});
    CHECK(settings.durability == store::Durability::full);
    CHECK(settings.log_timestamps == LogTimestamps::off);
    CHECK(settings.log_level() == LogLevel::verbose);
    CHECK(settings.config_file == file.path);
    CHECK(settings.effective.at("max-queue") == "100");
    CHECK(settings.effective.at("durability") == "\"full\"");
}

TEST_CASE("configuration errors name the file, the line and the key") {
    const TemporaryFile file{"port = 1\n\nmax-quue = 5\n"};
    CHECK(reread_error(file) ==
          file.path + " line 3: unknown key 'max-quue' (pubsubx-server --help lists them)");
    file.write("port = 70000\n");
    CHECK(reread_error(file) == file.path + " line 1: 'port': Value 70000 not in range 0 to 65535");
    file.write("max-frame = 1\nwrite-timeout = soon\n");
    CHECK(reread_error(file).starts_with(file.path + " line 2: 'write-timeout': 'soon' is not"));
    file.write("durability = \"sometimes\"\n");
    CHECK(reread_error(file).starts_with(file.path + " line 1: 'durability': "));
    file.write("verbose = 1\nverbose = 0\n");
    CHECK(reread_error(file) == file.path + " line 2: 'verbose' is set again (first on line 1)");
    file.write("[server]\nport = 1\n");
    CHECK(reread_error(file) ==
          file.path + " line 1: tables are not used here: every key goes at the top level");
    file.write("just words\n");
    CHECK(reread_error(file).starts_with(file.path + " line 1: unknown key 'just words'"));
    // What CLI11 2.1 would read wrongly, silently, is refused.
    file.write("port = 0\ndata-dir = \"/srv/store#1\" # comment\n");
    CHECK(reread_error(file).starts_with(file.path +
                                         " line 2: 'data-dir': a '#' inside a quoted value"));
    file.write("cluster = [\n  \"nats://a:4222\"\n]\n");
    CHECK(reread_error(file) ==
          file.path + " line 1: 'cluster': an array must be written on one line");
    file.write("cluster = [ # the servers ]\n  \"nats://a:4222\"\n]\n");
    CHECK(reread_error(file) ==
          file.path + " line 1: 'cluster': an array must be written on one line");
    file.write("data-dir = \"/srv/a\\\"#b\"\n");  // the '#' comes after an escaped quote
    CHECK(reread_error(file).starts_with(file.path +
                                         " line 1: 'data-dir': a '#' inside a quoted value"));
    // A count is digits: strtoull would take -1 or 2^64 as the largest number, "no limit".
    for (const std::string bad : {"-1", "99999999999999999999999", "1e6", "+5"}) {
        CAPTURE(bad);
        file.write("max-queue = " + bad + "\n");
        CHECK(reread_error(file).starts_with(file.path + " line 1: 'max-queue': '" + bad +
                                             "' is not a whole number"));
    }
    file.write("verbose = true\nquiet = true\n");
    CHECK(reread_error(file) == "--verbose excludes --quiet");
    // The command line's own error is not the file's, though the file sets the key too.
    file.write("max-queue = 5\n");
    const std::string error = reread_error(file, {"--max-queue", "x"});
    CHECK(error.find(file.path) == std::string::npos);
    CHECK(error.find("--max-queue") != std::string::npos);
}

TEST_CASE("compare_settings: the run-time keys change at SIGHUP, the others wait for a restart") {
    const TemporaryFile file{"max-queue = 5\nbind = \"127.0.0.1\"\n"};
    Settings in_force;
    std::string error;
    REQUIRE(reread_settings(with_config(file), in_force, error));
    file.write("max-queue = 6\nbind = \"0.0.0.0\"\nmax-topic-levels = 4\nquiet = true\n");
    Settings read;
    REQUIRE(reread_settings(with_config(file), read, error));
    const auto changes = compare_settings(in_force, read);
    REQUIRE(changes.size() == 4);
    for (const auto& change : changes) {
        CAPTURE(change.key);
        if (change.key == "max-queue") {
            CHECK(change.at_run_time);
            CHECK(change.in_force == "5");
            CHECK(change.read == "6");
        } else if (change.key == "quiet") {
            CHECK(change.at_run_time);
        } else {
            CHECK((change.key == "bind" || change.key == "max-topic-levels"));
            CHECK_FALSE(change.at_run_time);
        }
    }
    keep_run_time_settings(in_force, read);
    CHECK(in_force.broker.max_queue_bytes == 6);
    CHECK(in_force.log_level() == LogLevel::quiet);
    CHECK(in_force.server.bind_address == "127.0.0.1");
    CHECK(in_force.broker.max_topic_levels == 32);
}

TEST_CASE("Logger styles: plain, an RFC 3339 timestamp, or the journal's priority") {
    const TemporaryFile file{""};
    std::string error;
    auto log = LogFile::open(file.path, error);
    REQUIRE(log != nullptr);
    Logger logger{LogLevel::info, -1};
    logger.set_sink(log.get());
    logger.info("plain");
    logger.set_style(LogStyle::journal);
    logger.info("to the journal");
    logger.warning("careful");
    logger.error("failed");
    logger.set_style(LogStyle::timestamped);
    logger.info("stamped");
    logger.flush(std::chrono::seconds{5});
    const std::string text = file.read();
    CHECK(
        text.starts_with("INFO: plain\n<6>INFO: to the journal\n<4>WARNING: careful\n"
                         "<3>ERROR: failed\n"));
    const std::string stamped = text.substr(text.rfind("<3>ERROR: failed\n") + 17);
    REQUIRE(stamped.size() == 24 + 15);
    CHECK(stamped.substr(4, 1) == "-");
    CHECK(stamped.substr(10, 1) == "T");
    CHECK(stamped.substr(19, 1) == ".");
    CHECK(stamped.substr(23) == "Z INFO: stamped\n");
}

TEST_CASE("LogFile writes every line in order, reopens its path, and counts what it drops") {
    const TemporaryFile file{""};
    std::string error;
    auto log = LogFile::open(file.path, error);
    REQUIRE(log != nullptr);
    for (int i = 0; i < 1000; ++i) {
        log->write_line("line " + std::to_string(i) + "\n");
    }
    log->flush(std::chrono::seconds{5});
    std::string expected;
    for (int i = 0; i < 1000; ++i) {
        expected += "line " + std::to_string(i) + "\n";
    }
    CHECK(file.read() == expected);
    CHECK(log->lines_dropped() == 0);

    const std::string rotated = file.path + ".1";
    REQUIRE(std::rename(file.path.c_str(), rotated.c_str()) == 0);
    REQUIRE(log->reopen(error));
    log->write_line("after\n");
    log->flush(std::chrono::seconds{5});
    CHECK(file.read() == "after\n");
    std::remove(rotated.c_str());

    CHECK(LogFile::open("/nonexistent-directory/x.log", error) == nullptr);
    CHECK(error == "cannot open log file /nonexistent-directory/x.log: No such file or directory");
}
