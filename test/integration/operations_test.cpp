// Running the server as a service, over real loopback TCP: its configuration file (--config,
// --print-config, SIGHUP) and its log (timestamps, the journal's style, --log-file).
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "pubsubx/protocol.hpp"
#include "support.hpp"

using namespace pubsubx::testing;

namespace {

void write_file(const std::string& path, const std::string& text) {
    std::ofstream{path, std::ios::trunc} << text;
}

std::string read_file(const std::string& path) {
    std::ifstream file{path};
    std::stringstream text;
    text << file.rdbuf();
    return text.str();
}

// Runs pubsubx-server with `args` to its end; its output and exit code.
struct Finished {
    std::string output;
    int exit_code = -1;
};
Finished run_to_end(const std::vector<std::string>& args) {
    ChildProcess server{binary_path("PUBSUBX_SERVER"), args};
    const auto code = server.wait_exit();
    REQUIRE(code.has_value());
    return {server.output(), *code};
}

// A subscriber's reply to a topic of `length` bytes: the message echoed back, or the error
// (which both the SUBSCRIBE and the PUBLISH get).
std::string try_topic(TestClient& client, std::size_t length) {
    const std::string topic(length, 't');
    client.send_frame("SUBSCRIBE " + topic);
    client.send_frame("PUBLISH " + topic + " x");
    const std::string reply = client.read_frame().value_or("(nothing)");
    if (reply.starts_with("ERROR: ")) {
        CHECK(client.read_frame() == reply);
    }
    return reply;
}

// Checks `done` every 20 ms until it holds; false if it did not within `timeout`.
template <typename Condition>
bool wait_until(Condition done, Millis timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done()) {
        if (std::chrono::steady_clock::now() > deadline) {
            return false;
        }
        std::this_thread::sleep_for(20ms);
    }
    return true;
}

// Waits until the file at `path` holds `needle`; false if not within `timeout`.
bool wait_for_file_text(const std::string& path, std::string_view needle, Millis timeout = 5000ms) {
    return wait_until([&] { return read_file(path).find(needle) != std::string::npos; }, timeout);
}

// A loopback port nothing listens on now (the kernel's pick, released).
std::uint16_t free_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0);
    ::close(fd);
    return ntohs(address.sin_port);
}

bool wait_until_accepting(std::uint16_t port, Millis timeout = 5000ms) {
    return wait_until([port] { return port_accepts_connections(port); }, timeout);
}

const std::regex kStampedLine{R"(^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (INFO|WARNING|ERROR): )"};

// Every line of `text` starts with a timestamp and a level.
bool every_line_stamped(const std::string& text) {
    std::istringstream lines{text};
    std::string line;
    int count = 0;
    while (std::getline(lines, line)) {
        if (!std::regex_search(line, kStampedLine)) {
            return false;
        }
        ++count;
    }
    return count > 0;
}

}  // namespace

TEST_CASE("--config sets any option by its long name; the command line wins") {
    TemporaryDirectory directory{"config"};
    const std::string config = directory.path() + "/server.toml";
    write_file(config,
               "# a comment\n"
               "max-topic-length = 8\n"
               "lost-timeout = 2.5\n"
               "verbose = true\n"
               "durability = \"full\"\n");
    {
        ServerProcess server{{"--config", config}};
        TestClient c{server.port()};
        c.connect_as("c");
        CHECK(try_topic(c, 9) == "ERROR: Topic too long (the limit is 8 bytes)");
        CHECK(try_topic(c, 8) == std::string(8, 't') + " x");
        CHECK(server.wait_for_output("INFO: Client 'c' published to"));  // verbose = true
    }
    ServerProcess server{{"--config", config, "--max-topic-length", "16"}};
    TestClient c{server.port()};
    c.connect_as("c");
    CHECK(try_topic(c, 16) == std::string(16, 't') + " x");
    CHECK(try_topic(c, 17) == "ERROR: Topic too long (the limit is 16 bytes)");
}

TEST_CASE("an unknown key or a bad value in --config is an error naming the line and key") {
    TemporaryDirectory directory{"config"};
    const std::string config = directory.path() + "/server.toml";
    write_file(config, "port = 0\n\n# the next key is misspelt\nlost-timout = 5\n");
    Finished run = run_to_end({"--config", config});
    CHECK(run.exit_code == 2);
    CHECK(run.output.find(config + " line 4: unknown key 'lost-timout'") != std::string::npos);

    write_file(config, "port = 0\nmax-queue = lots\n");
    run = run_to_end({"--config", config});
    CHECK(run.exit_code == 2);
    CHECK(run.output.find(config + " line 2: 'max-queue': ") != std::string::npos);

    write_file(config, "lost-timeout = -1\n");
    run = run_to_end({"--config", config});
    CHECK(run.exit_code == 2);
    CHECK(run.output.find(config + " line 1: 'lost-timeout': '-1' is not a number of seconds") !=
          std::string::npos);

    write_file(config, "port = 1\nmax-queue = 5\nport = 2\n");
    run = run_to_end({"--config", config});
    CHECK(run.exit_code == 2);
    CHECK(run.output.find(config + " line 3: 'port' is set again (first on line 1)") !=
          std::string::npos);

    // A bad value on the command line is the command line's error, not the file's.
    write_file(config, "max-queue = 5\n");
    run = run_to_end({"--config", config, "--max-queue", "x"});
    CHECK(run.exit_code == 2);
    CHECK(run.output.find(config) == std::string::npos);
    CHECK(run.output.find("--max-queue") != std::string::npos);

    run = run_to_end({"--config", directory.path() + "/missing.toml"});
    CHECK(run.exit_code == 2);
    CHECK(run.output.find("missing.toml") != std::string::npos);
}

TEST_CASE("--print-config writes the effective configuration, which reads back the same") {
    TemporaryDirectory directory{"config"};
    const std::string config = directory.path() + "/server.toml";
    write_file(config, "max-queue = 4096\ndurability = \"FULL\"\n");
    const Finished printed =
        run_to_end({"--config", config, "--lost-timeout", "7", "--print-config"});
    REQUIRE(printed.exit_code == 0);
    CHECK(printed.output.find("\nmax-queue=4096\n") != std::string::npos);
    CHECK(printed.output.find("\nlost-timeout=7\n") != std::string::npos);
    CHECK(printed.output.find("\ndurability=\"full\"\n") != std::string::npos);
    CHECK(printed.output.find("\nmax-topics=10000\n") != std::string::npos);  // a default
    const std::string copy = directory.path() + "/printed.toml";
    write_file(copy, printed.output);
    const Finished again = run_to_end({"--config", copy, "--print-config"});
    CHECK(again.exit_code == 0);
    CHECK(again.output == printed.output);
}

TEST_CASE("SIGHUP re-reads the configuration file: run-time settings change, others wait") {
    TemporaryDirectory directory{"config"};
    const std::string config = directory.path() + "/server.toml";
    write_file(config, "max-topic-length = 8\n");
    ServerProcess server{{"--config", config}};
    TestClient c{server.port()};
    c.connect_as("c");
    CHECK(try_topic(c, 12) == "ERROR: Topic too long (the limit is 8 bytes)");

    write_file(config, "max-topic-length = 16\nbind = \"0.0.0.0\"\nverbose = true\n");
    std::size_t from = server.output().size();
    server.send_signal(SIGHUP);
    CHECK(server.wait_for_output("INFO: SIGHUP: max-topic-length changed from 8 to 16", 5000ms,
                                 from));
    CHECK(server.wait_for_output("INFO: SIGHUP: verbose changed from false to true", 5000ms, from));
    CHECK(server.wait_for_output("WARNING: SIGHUP: bind is \"0.0.0.0\" in " + config +
                                     " but stays \"127.0.0.1\" until a restart",
                                 5000ms, from));
    CHECK(try_topic(c, 12) == std::string(12, 't') + " x");
    CHECK(server.wait_for_output("INFO: Client 'c' published to", 5000ms, from));

    // A file that cannot be used changes nothing.
    write_file(config, "max-topic-length = 4\nmax-queue = lots\n");
    from = server.output().size();
    server.send_signal(SIGHUP);
    CHECK(
        server.wait_for_output("ERROR: SIGHUP: configuration not reloaded, the settings in "
                               "force stay: " +
                                   config + " line 2: 'max-queue'",
                               5000ms, from));
    CHECK(try_topic(c, 12) == std::string(12, 't') + " x");
    CHECK(try_topic(c, 17) == "ERROR: Topic too long (the limit is 16 bytes)");
}

TEST_CASE("SIGHUP: a lower --max-connections refuses new connections beyond it") {
    TemporaryDirectory directory{"config"};
    const std::string config = directory.path() + "/server.toml";
    write_file(config, "max-connections = 10\n");
    ServerProcess server{{"--config", config}};
    TestClient first{server.port()};
    first.connect_as("first");
    TestClient second{server.port()};
    second.connect_as("second");
    write_file(config, "max-connections = 2\n");
    const std::size_t from = server.output().size();
    server.send_signal(SIGHUP);
    REQUIRE(server.wait_for_output("SIGHUP: max-connections changed from 10 to 2", 5000ms, from));
    TestClient third{server.port()};
    CHECK(third.read_frame() == "ERROR: Server is full, try again later");
}

TEST_CASE("SIGHUP: a max-connections past the descriptor limit is said as the value in force") {
    TemporaryDirectory directory{"config"};
    const std::string config = directory.path() + "/server.toml";
    write_file(config, "max-connections = 10\n");
    ServerProcess server{{"--config", config}, ChildLimits::descriptors_at({128, 128})};
    write_file(config, "max-connections = 1000\n");
    const std::size_t from = server.output().size();
    server.send_signal(SIGHUP);
    CHECK(
        server.wait_for_output("SIGHUP: max-connections changed from 10 to 1000 (in force: 96, "
                               "what the file descriptor limit holds)",
                               5000ms, from));
}

TEST_CASE("SIGHUP fits max-connections to the HTTP server in force, not to the file's") {
    TemporaryDirectory directory{"config"};
    const std::string config = directory.path() + "/server.toml";
    write_file(config, "http-port = 0\nmax-connections = 10\n");
    ServerProcess server{{"--config", config}, ChildLimits::descriptors_at({128, 128})};
    write_file(config, "max-connections = 1000\n");  // no http-port: only at a restart
    const std::size_t from = server.output().size();
    server.send_signal(SIGHUP);
    // 128 descriptors, less 32 for the server's own and 14 for the HTTP server still running.
    CHECK(server.wait_for_output("SIGHUP: max-connections changed from 10 to 1000 (in force: 82,",
                                 5000ms, from));
}

TEST_CASE(
    "log lines carry an RFC 3339 timestamp and their level, or not with --log-timestamps off") {
    {
        ServerProcess server{{"--max-topic-length", "4"}};
        TestClient c{server.port()};
        c.connect_as("c");
        c.send_frame("SUBSCRIBE toolong");
        CHECK(c.read_frame().has_value());
        CHECK(server.wait_for_output("ERROR: Client 'c' used a topic"));
        server.send_signal(SIGTERM);
        REQUIRE(server.wait_exit() == 0);
        CHECK(every_line_stamped(server.output()));
        CHECK(server.output().find("Z ERROR: Client 'c' used a topic") != std::string::npos);
    }
    ServerProcess plain{{"--log-timestamps", "off"}};
    CHECK(plain.output().starts_with("INFO: "));
    CHECK(plain.output().find("\nINFO: Server started, listening on 127.0.0.1:") !=
          std::string::npos);
}

TEST_CASE("under systemd's journal (JOURNAL_STREAM) lines carry its priority, not a timestamp") {
    // The shell names its own standard output, the pipe the server inherits, as systemd would.
    ChildProcess server{
        "/bin/sh",
        {"-c", "export JOURNAL_STREAM=$(stat -L -c %d:%i /proc/$$/fd/1); exec \"$0\" 0",
         binary_path("PUBSUBX_SERVER")}};
    REQUIRE(server.wait_for_output("Server started"));
    CHECK(server.output().find("<6>INFO: Server started, listening on 127.0.0.1:") !=
          std::string::npos);
    CHECK(!std::regex_search(server.output(), kStampedLine));
    server.send_signal(SIGTERM);
    CHECK(server.wait_exit() == 0);

    // A JOURNAL_STREAM that names another stream (the journal is not reading this one).
    ChildProcess elsewhere{
        "/bin/sh",
        {"-c", "export JOURNAL_STREAM=1:1; exec \"$0\" 0", binary_path("PUBSUBX_SERVER")}};
    REQUIRE(elsewhere.wait_for_output("Server started"));
    elsewhere.send_signal(SIGTERM);
    CHECK(elsewhere.wait_exit() == 0);
    CHECK(every_line_stamped(elsewhere.output()));
}

TEST_CASE("--log-file takes the log; SIGHUP reopens it after logrotate moved it away") {
    TemporaryDirectory directory{"log"};
    const std::string log = directory.path() + "/server.log";
    ChildProcess server{binary_path("PUBSUBX_SERVER"), {"0", "--log-file", log}};
    constexpr std::string_view kListening = "listening on 127.0.0.1:";
    REQUIRE(wait_for_file_text(log, kListening));
    const std::string started = read_file(log);
    const auto port = static_cast<std::uint16_t>(
        std::stoi(started.substr(started.find(kListening) + kListening.size())));
    TestClient before{port};
    before.connect_as("before");
    REQUIRE(wait_for_file_text(log, "Client 'before' added"));

    std::filesystem::rename(log, log + ".1");
    server.send_signal(SIGHUP);
    REQUIRE(wait_for_file_text(log, "INFO: SIGHUP: log file " + log + " reopened"));
    TestClient after{port};
    after.connect_as("after");
    REQUIRE(wait_for_file_text(log, "Client 'after' added"));
    server.send_signal(SIGTERM);
    REQUIRE(server.wait_exit() == 0);

    const std::string rotated = read_file(log + ".1");
    const std::string current = read_file(log);
    CHECK(rotated.find("Client 'before' added") != std::string::npos);
    CHECK(rotated.find("Client 'after'") == std::string::npos);
    CHECK(current.find("Client 'before'") == std::string::npos);
    CHECK(current.find("INFO: Shutting down") != std::string::npos);  // written before the exit
    CHECK(every_line_stamped(rotated));
    CHECK(every_line_stamped(current));
    CHECK(server.output().empty());  // nothing on standard output
}

TEST_CASE("SIGHUP with a --log-file FIFO whose reader is gone does not stall the broker") {
    TemporaryDirectory directory{"log"};
    const std::string fifo = directory.path() + "/server.log";
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    int reader = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    REQUIRE(reader >= 0);
    const std::uint16_t port = free_port();  // the log, where the port is said, is the FIFO
    ChildProcess server{binary_path("PUBSUBX_SERVER"), {std::to_string(port), "--log-file", fifo}};
    REQUIRE(wait_until_accepting(port));
    ::close(reader);             // the log's reader goes away
    server.send_signal(SIGHUP);  // the reopen finds a FIFO with no reader
    std::this_thread::sleep_for(200ms);
    TestClient c{port};
    c.connect_as("after-sighup");  // throws if the broker does not answer
    server.send_signal(SIGTERM);
    CHECK(server.wait_exit(5000ms) == 0);
}

TEST_CASE("at start, a --log-file FIFO waits for its reader") {
    TemporaryDirectory directory{"log"};
    const std::string fifo = directory.path() + "/server.log";
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    const std::uint16_t port = free_port();
    ChildProcess server{binary_path("PUBSUBX_SERVER"), {std::to_string(port), "--log-file", fifo}};
    std::this_thread::sleep_for(300ms);  // the reader comes later, as a logger started after
    const int reader = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    REQUIRE(reader >= 0);
    CHECK(wait_until_accepting(port));
    server.send_signal(SIGTERM);
    CHECK(server.wait_exit(5000ms) == 0);
    ::close(reader);
}

TEST_CASE("a --log-file that cannot be opened stops the start with exit code 1") {
    const Finished run = run_to_end({"0", "--log-file", "/nonexistent-directory/server.log"});
    CHECK(run.exit_code == 1);
    CHECK(run.output.find("ERROR: Cannot log: cannot open log file "
                          "/nonexistent-directory/server.log: No such file or directory") !=
          std::string::npos);
}

TEST_CASE("a log file that takes no more lines never stalls the broker, and it still exits") {
    // A FIFO that its reader never empties: the log writer's write blocks for good, as on a
    // dead NFS mount. The reader is opened first, so that the server's open does not wait.
    TemporaryDirectory directory{"log"};
    const std::string fifo = directory.path() + "/stuck.log";
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    const int reader = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    REQUIRE(reader >= 0);
    // The log, where the server says its port, cannot be read: it gets a port found free just
    // before.
    const std::uint16_t port = free_port();
    ChildProcess server{binary_path("PUBSUBX_SERVER"),
                        {std::to_string(port), "--log-file", fifo, "--verbose"}};
    REQUIRE(wait_until_accepting(port));
    TestClient subscriber{port};
    subscriber.connect_as("sub");
    subscriber.send_frame("SUBSCRIBE t");
    TestClient publisher{port};
    publisher.connect_as("pub");
    publisher.barrier();
    // Each message is a log line of ~100 bytes with --verbose: 20,000 of them are far more
    // than the FIFO (64 KiB) and the writer's bound (1 MiB) hold, and fit the subscriber's
    // queue (2 MiB).
    constexpr int kMessages = 20'000;
    const std::string data(40, 'x');
    std::string burst;
    for (int i = 0; i < kMessages; ++i) {
        pubsubx::append_frame(burst, "PUBLISH t " + data);
    }
    publisher.send_raw(burst);
    int received = 0;
    while (received < kMessages && subscriber.read_frame(5000ms)) {
        ++received;
    }
    CHECK(received == kMessages);
    server.send_signal(SIGTERM);
    CHECK(server.wait_exit(10000ms) == 0);
    ::close(reader);
}
