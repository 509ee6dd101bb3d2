#include "support.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace pubsubx::testing {

namespace {

using SteadyClock = std::chrono::steady_clock;

[[noreturn]] void fail(const std::string& what) {
    throw std::runtime_error(what + ": " + std::strerror(errno));
}

int remaining_ms(SteadyClock::time_point deadline) {
    const auto left = std::chrono::duration_cast<Millis>(deadline - SteadyClock::now()).count();
    return left < 0 ? 0 : static_cast<int>(left);
}

// Sends all of `bytes` on `fd`, blocking.
void send_all(int fd, std::string_view bytes) {
    while (!bytes.empty()) {
        const ssize_t sent = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
        if (sent < 0) {
            fail("send");
        }
        bytes.remove_prefix(static_cast<std::size_t>(sent));
    }
}

}  // namespace

std::string binary_path(const char* environment_variable) {
    const char* path = std::getenv(environment_variable);
    if (path == nullptr) {
        throw std::runtime_error(std::string{environment_variable} + " is not set");
    }
    return path;
}

ChildProcess::ChildProcess(const std::string& program, const std::vector<std::string>& args,
                           bool pipe_stdin, const ChildLimits& limits) {
    start(program, args, pipe_stdin, limits);
}

void ChildProcess::start(const std::string& program, const std::vector<std::string>& args,
                         bool pipe_stdin, const ChildLimits& limits) {
    close_stdin();
    close_output();
    exit_code_.reset();
    int output[2];
    int input[2] = {-1, -1};
    if (pipe2(output, O_CLOEXEC) != 0 || (pipe_stdin && pipe2(input, O_CLOEXEC) != 0)) {
        fail("pipe");
    }
    pid_ = fork();
    if (pid_ < 0) {
        fail("fork");
    }
    if (pid_ == 0) {
        if (limits.descriptors) {
            const rlimit limit{limits.descriptors->soft, limits.descriptors->hard};
            if (setrlimit(RLIMIT_NOFILE, &limit) != 0) {
                _exit(126);
            }
        }
        if (limits.file_size) {
            const rlimit limit{static_cast<rlim_t>(*limits.file_size), RLIM_INFINITY};
            if (setrlimit(RLIMIT_FSIZE, &limit) != 0) {
                _exit(126);
            }
        }
        dup2(output[1], STDOUT_FILENO);
        dup2(output[1], STDERR_FILENO);
        if (pipe_stdin) {
            dup2(input[0], STDIN_FILENO);
        } else {
            const int null_fd = open("/dev/null", O_RDONLY);
            dup2(null_fd, STDIN_FILENO);
        }
        std::vector<char*> argv;
        argv.push_back(const_cast<char*>(program.c_str()));
        for (const std::string& arg : args) {
            argv.push_back(const_cast<char*>(arg.c_str()));
        }
        argv.push_back(nullptr);
        execv(program.c_str(), argv.data());
        _exit(127);
    }
    close(output[1]);
    output_fd_ = output[0];
    if (pipe_stdin) {
        close(input[0]);
        stdin_fd_ = input[1];
    }
}

ChildProcess::~ChildProcess() {
    // pid_ stays -1 when a subclass threw before start(), and kill(-1) signals every process.
    if (pid_ > 0 && !exit_code_) {
        kill(pid_, SIGKILL);
        waitpid(pid_, nullptr, 0);
    }
    close_stdin();
    close_output();
}

bool ChildProcess::read_output(Millis timeout) {
    if (output_fd_ < 0) {
        std::this_thread::sleep_for(timeout);
        return false;
    }
    pollfd ready{output_fd_, POLLIN, 0};
    if (poll(&ready, 1, static_cast<int>(timeout.count())) <= 0) {
        return true;
    }
    char buffer[4096];
    const ssize_t count = read(output_fd_, buffer, sizeof buffer);
    if (count <= 0) {
        return false;
    }
    output_.append(buffer, static_cast<std::size_t>(count));
    return true;
}

bool ChildProcess::wait_for_output(std::string_view needle, Millis timeout, std::size_t from) {
    const auto deadline = SteadyClock::now() + timeout;
    for (;;) {
        if (output_.find(needle, from) != std::string::npos) {
            return true;
        }
        const int left = remaining_ms(deadline);
        if (left == 0 || !read_output(Millis{left})) {
            return output_.find(needle, from) != std::string::npos;
        }
    }
}

const std::string& ChildProcess::output() {
    while (read_output(0ms)) {
        pollfd ready{output_fd_, POLLIN, 0};
        if (poll(&ready, 1, 0) <= 0) {
            break;
        }
    }
    return output_;
}

void ChildProcess::write_stdin(std::string_view text) {
    while (!text.empty()) {
        const ssize_t written = write(stdin_fd_, text.data(), text.size());
        if (written < 0) {
            fail("write to child stdin");
        }
        text.remove_prefix(static_cast<std::size_t>(written));
    }
}

void ChildProcess::close_stdin() {
    if (stdin_fd_ >= 0) {
        close(stdin_fd_);
        stdin_fd_ = -1;
    }
}

void ChildProcess::close_output() {
    if (output_fd_ >= 0) {
        close(output_fd_);
        output_fd_ = -1;
    }
}

void ChildProcess::send_signal(int signal) {
    if (pid_ > 0) {
        kill(pid_, signal);
    }
}

std::optional<int> ChildProcess::wait_exit(Millis timeout) {
    // Never started: waitpid(-1) would reap some other child of the test.
    if (exit_code_ || pid_ <= 0) {
        return exit_code_;
    }
    const auto deadline = SteadyClock::now() + timeout;
    do {
        int status = 0;
        if (waitpid(pid_, &status, WNOHANG) == pid_) {
            exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            while (read_output(0ms) && output_fd_ >= 0) {
                pollfd ready{output_fd_, POLLIN, 0};
                if (poll(&ready, 1, 0) <= 0) {
                    break;
                }
            }
            return exit_code_;
        }
        read_output(5ms);
    } while (SteadyClock::now() < deadline);
    return std::nullopt;
}

ServerProcess::ServerProcess(std::vector<std::string> extra_args, const ChildLimits& limits)
    : ChildProcess(
          binary_path("PUBSUBX_SERVER"),
          [&] {
              std::vector<std::string> args{"0"};
              args.insert(args.end(), extra_args.begin(), extra_args.end());
              return args;
          }(),
          false, limits) {
    constexpr std::string_view kListening = "listening on 127.0.0.1:";
    if (!wait_for_output(kListening) || !wait_for_output(" ")) {
        throw std::runtime_error("server did not start: " + output());
    }
    const std::size_t at = output().find(kListening) + kListening.size();
    port_ = static_cast<std::uint16_t>(std::stoi(output().substr(at)));
}

namespace {

constexpr Millis kNatsStartTimeout = 10000ms;

// $PUBSUBX_NATS_SERVER, else the first nats-server on PATH, else Debian's /usr/sbin one.
std::string nats_server_binary() {
    if (const char* chosen = std::getenv("PUBSUBX_NATS_SERVER"); chosen != nullptr && *chosen) {
        if (access(chosen, X_OK) != 0) {
            fail(std::string{"PUBSUBX_NATS_SERVER="} + chosen);
        }
        return chosen;
    }
    const char* path = std::getenv("PATH");
    std::istringstream directories{std::string{path != nullptr ? path : ""} + ":/usr/sbin"};
    for (std::string directory; std::getline(directories, directory, ':');) {
        const std::string candidate = directory + "/nats-server";
        if (!directory.empty() && access(candidate.c_str(), X_OK) == 0) {
            return candidate;
        }
    }
    throw std::runtime_error(
        "nats-server not found on PATH nor in /usr/sbin: install Debian's nats-server, or name "
        "the binary in PUBSUBX_NATS_SERVER");
}

// The client port in a ports file, {"nats":["nats://127.0.0.1:4222"],...}; nullopt until the
// file is complete.
std::optional<std::uint16_t> client_port_in(const std::string& ports_json) {
    const std::size_t key = ports_json.find("\"nats\":");
    const std::size_t url = ports_json.find("nats://", key);
    const std::size_t end = ports_json.find('"', url);
    if (key == std::string::npos || url == std::string::npos || end == std::string::npos) {
        return std::nullopt;
    }
    const std::size_t colon = ports_json.rfind(':', end);
    std::uint16_t port = 0;
    const auto [stop, error] =
        std::from_chars(ports_json.data() + colon + 1, ports_json.data() + end, port);
    if (error != std::errc{} || stop != ports_json.data() + end || port == 0) {
        return std::nullopt;
    }
    return port;
}

std::string read_whole_file(const std::string& path) {
    std::ifstream file{path};
    return {std::istreambuf_iterator<char>{file}, std::istreambuf_iterator<char>{}};
}

}  // namespace

TemporaryDirectory::TemporaryDirectory(std::string_view purpose) {
    const char* base = std::getenv("TMPDIR");
    std::string pattern = std::string{base != nullptr && *base != '\0' ? base : "/tmp"} +
                          "/pubsubx-" + std::string{purpose} + "-XXXXXX";
    if (mkdtemp(pattern.data()) == nullptr) {
        fail("mkdtemp " + pattern);
    }
    path_ = pattern;
}

TemporaryDirectory::~TemporaryDirectory() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
}

NatsServerProcess::NatsServerProcess() : program_(nats_server_binary()) {
    launch("-1");
    port_ = port_from_ports_file();
    wait_accepting();
}

NatsServerProcess::~NatsServerProcess() {
    // Before the store directory goes: a running server would write into it while it is removed.
    kill();
}

std::string NatsServerProcess::url() const {
    return "nats://127.0.0.1:" + std::to_string(port_);
}

void NatsServerProcess::launch(const std::string& port_argument) {
    const std::size_t from = output().size();
    start(program_, {"-js", "-sd", directory_.path() + "/store", "-a", "127.0.0.1", "-p",
                     port_argument, "--ports_file_dir", directory_.path()});
    if (!wait_for_output("Server is ready", kNatsStartTimeout, from)) {
        fail_start("did not log \"Server is ready\"");
    }
}

// nats-server writes <executable name>_<pid>.ports when it listens, the only way to learn the
// port it picked for -p -1 short of parsing its log.
std::uint16_t NatsServerProcess::port_from_ports_file() {
    const std::string ports_file = directory_.path() + "/" +
                                   std::filesystem::path{program_}.filename().string() + "_" +
                                   std::to_string(pid()) + ".ports";
    const auto deadline = SteadyClock::now() + kNatsStartTimeout;
    while (SteadyClock::now() < deadline) {
        if (const auto port = client_port_in(read_whole_file(ports_file))) {
            return *port;
        }
        std::this_thread::sleep_for(10ms);
    }
    fail_start("wrote no client port into " + ports_file);
}

void NatsServerProcess::wait_accepting() {
    const auto deadline = SteadyClock::now() + kNatsStartTimeout;
    while (!port_accepts_connections(port_)) {
        if (SteadyClock::now() >= deadline) {
            fail_start("does not accept connections on " + url());
        }
        std::this_thread::sleep_for(10ms);
    }
}

void NatsServerProcess::fail_start(const std::string& why) {
    kill();
    throw std::runtime_error("nats-server (" + program_ + ") " + why + ":\n" + output());
}

void NatsServerProcess::stop(Millis grace) {
    if (wait_exit(0ms)) {
        return;
    }
    send_signal(SIGTERM);
    if (!wait_exit(grace)) {
        kill();
    }
}

void NatsServerProcess::restart() {
    stop();
    launch(std::to_string(port_));
    wait_accepting();
}

void NatsServerProcess::kill() {
    // Only while it runs: once reaped, its PID may belong to another process.
    if (wait_exit(0ms)) {
        return;
    }
    send_signal(SIGKILL);
    // SIGKILL cannot be caught; this ends at once unless the kernel itself is stuck.
    wait_exit(kNatsStartTimeout);
}

bool port_accepts_connections(std::uint16_t port) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fail("socket");
    }
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const bool accepted = ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
    close(fd);
    return accepted;
}

std::vector<std::string> cluster_args(const NatsServerProcess& nats, std::string node,
                                      std::string cluster, int lease_seconds) {
    return {"--cluster",   nats.url(),      "--cluster-name",  std::move(cluster),
            "--node-name", std::move(node), "--cluster-lease", std::to_string(lease_seconds)};
}

bool wait_joined(ServerProcess& node, Millis timeout) {
    constexpr std::string_view kJoined = "' joined cluster '";
    const auto deadline = SteadyClock::now() + timeout;
    std::size_t from = 0;
    while (node.wait_for_output(kJoined, Millis{remaining_ms(deadline)}, from)) {
        const std::string& output = node.output();
        const std::size_t joined = output.find(kJoined, from);
        const std::size_t line_end = output.rfind('\n', joined);
        const std::size_t line = line_end == std::string::npos ? 0 : line_end + 1;
        // The same line must begin the sentence: a message text could also hold the words.
        const std::size_t subject = output.find("Cluster: node '", line);
        if (subject != std::string::npos && subject < joined) {
            return true;
        }
        from = joined + 1;
    }
    return false;
}

TestClient::TestClient(std::uint16_t port, int receive_buffer, const char* source) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (receive_buffer > 0) {
        setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
    }
    sockaddr_in local{};
    local.sin_family = AF_INET;
    if (fd_ < 0 || inet_pton(AF_INET, source, &local.sin_addr) != 1 ||
        ::bind(fd_, reinterpret_cast<sockaddr*>(&local), sizeof local) != 0) {
        fail(std::string{"bind to "} + source);
    }
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd_ < 0 || ::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
        fail("connect to 127.0.0.1:" + std::to_string(port));
    }
    const int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

std::uint16_t TestClient::local_port() const {
    sockaddr_in address{};
    socklen_t length = sizeof address;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length);
    return ntohs(address.sin_port);
}

TestClient::~TestClient() {
    if (fd_ >= 0) {
        close(fd_);
    }
}

void TestClient::send_raw(std::string_view bytes) {
    send_all(fd_, bytes);
}

void TestClient::send_frame(std::string_view frame) {
    std::string bytes;
    append_frame(bytes, frame);
    send_raw(bytes);
}

bool TestClient::receive(Millis timeout) {
    if (peer_closed_) {
        return false;
    }
    pollfd ready{fd_, POLLIN, 0};
    if (poll(&ready, 1, static_cast<int>(timeout.count())) <= 0) {
        return false;
    }
    char buffer[65536];
    const ssize_t count = recv(fd_, buffer, sizeof buffer, 0);
    if (count <= 0) {
        peer_closed_ = true;
        return false;
    }
    splitter_.feed({buffer, static_cast<std::size_t>(count)}, [&](std::string_view frame) {
        frames_.emplace_back(frame);
        return true;
    });
    return true;
}

std::size_t TestClient::read_slowly(std::size_t max_bytes, Millis timeout) {
    pollfd ready{fd_, POLLIN, 0};
    if (peer_closed_ || poll(&ready, 1, static_cast<int>(timeout.count())) <= 0) {
        return 0;
    }
    std::string buffer(max_bytes, '\0');
    const ssize_t count = recv(fd_, buffer.data(), buffer.size(), 0);
    if (count <= 0) {
        peer_closed_ = true;
        return 0;
    }
    splitter_.feed({buffer.data(), static_cast<std::size_t>(count)},
                   [](std::string_view) { return true; });
    return static_cast<std::size_t>(count);
}

std::optional<std::string> TestClient::read_frame(Millis timeout) {
    const auto deadline = SteadyClock::now() + timeout;
    while (frames_.empty()) {
        const int left = remaining_ms(deadline);
        if (peer_closed_ || left == 0) {
            return std::nullopt;
        }
        receive(Millis{left});
    }
    std::string frame = std::move(frames_.front());
    frames_.pop_front();
    return frame;
}

bool TestClient::wait_closed(Millis timeout) {
    const auto deadline = SteadyClock::now() + timeout;
    while (!peer_closed_ && remaining_ms(deadline) > 0) {
        receive(Millis{remaining_ms(deadline)});
    }
    return peer_closed_;
}

void TestClient::drop(bool reset) {
    if (reset) {
        const linger abort_on_close{1, 0};
        setsockopt(fd_, SOL_SOCKET, SO_LINGER, &abort_on_close, sizeof abort_on_close);
    }
    close(fd_);
    fd_ = -1;
}

void TestClient::shutdown_sending() {
    if (::shutdown(fd_, SHUT_WR) != 0) {
        fail("shutdown");
    }
}

void TestClient::connect_as(std::string_view name) {
    send_frame("CONNECT " + std::string{name});
    const auto reply = read_frame();
    if (reply != kConnAccepted) {
        throw std::runtime_error("CONNECT " + std::string{name} +
                                 " was answered with: " + reply.value_or("(nothing)"));
    }
}

void TestClient::barrier(std::string_view topic_prefix) {
    const std::string topic =
        std::string{topic_prefix} + std::to_string(fd_) + "-" + std::to_string(getpid());
    const std::string probe = "probe " + std::to_string(++barrier_count_);
    send_frame("SUBSCRIBE " + topic);
    send_frame("PUBLISH " + topic + " " + probe);
    const auto deadline = SteadyClock::now() + 5s;
    std::deque<std::string> others;  // frames for the test itself, kept in order
    while (SteadyClock::now() < deadline) {
        const auto frame = read_frame(Millis{remaining_ms(deadline)});
        if (!frame) {
            break;
        }
        if (*frame == topic + " " + probe) {
            send_frame("UNSUBSCRIBE " + topic);
            frames_.insert(frames_.begin(), others.begin(), others.end());
            return;
        }
        others.push_back(*frame);
    }
    throw std::runtime_error("barrier probe did not come back");
}

SilentServer::SilentServer() {
    listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    // A fixed, small receive buffer (inherited by the accepted connection, no autotuning): a
    // broker that stops reading holds back a client's writes after a few hundred KB, whatever
    // the machine's tcp_rmem allows.
    const int receive_buffer = 64 * 1024;
    setsockopt(listen_fd_, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    if (listen_fd_ < 0 ||
        bind(listen_fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
        listen(listen_fd_, 8) != 0 ||
        getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
        fail("silent listener");
    }
    port_ = ntohs(address.sin_port);
}

SilentServer::~SilentServer() {
    if (connection_fd_ >= 0) {
        close(connection_fd_);
    }
    close(listen_fd_);
}

bool SilentServer::accept_and_read(std::string_view needle, Millis timeout) {
    const auto deadline = SteadyClock::now() + timeout;
    pollfd ready{listen_fd_, POLLIN, 0};
    if (poll(&ready, 1, remaining_ms(deadline)) <= 0) {
        return false;
    }
    connection_fd_ = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    return read_until(needle, std::chrono::duration_cast<Millis>(deadline - SteadyClock::now()));
}

bool SilentServer::read_until(std::string_view needle, Millis timeout) {
    const auto deadline = SteadyClock::now() + timeout;
    std::string& received = received_;
    received.clear();
    while (connection_fd_ >= 0 && received.find(needle) == std::string::npos) {
        pollfd readable{connection_fd_, POLLIN, 0};
        char buffer[4096];
        if (poll(&readable, 1, remaining_ms(deadline)) <= 0) {
            return false;
        }
        const ssize_t count = recv(connection_fd_, buffer, sizeof buffer, 0);
        if (count <= 0) {
            return false;
        }
        received.append(buffer, static_cast<std::size_t>(count));
    }
    return connection_fd_ >= 0;
}

void SilentServer::send_raw(std::string_view bytes) {
    send_all(connection_fd_, bytes);
}

void SilentServer::close_connection(bool reset) {
    if (connection_fd_ < 0) {
        return;
    }
    if (reset) {
        const linger abort_on_close{1, 0};
        setsockopt(connection_fd_, SOL_SOCKET, SO_LINGER, &abort_on_close, sizeof abort_on_close);
    }
    close(connection_fd_);
    connection_fd_ = -1;
}

void wait_lost(ServerProcess& server, const std::string& name) {
    if (!server.wait_for_output("Client '" + name + "' lost")) {
        throw std::runtime_error("the server did not log that '" + name + "' is lost");
    }
}

void publish_bulk(TestClient& publisher, int count, std::size_t size) {
    const std::string frame = "PUBLISH t " + std::string(size, 'b') + std::string{kDelimiter};
    std::string batch;
    for (int i = 0; i < count; ++i) {
        batch += frame;
    }
    publisher.send_raw(batch);
}

bool publish_until_logged(ServerProcess& server, TestClient& publisher, std::string_view needle,
                          Millis pause, int rounds) {
    for (int round = 0; round < rounds; ++round) {
        publish_bulk(publisher, 100, 1000);
        if (server.wait_for_output(needle, pause)) {
            return true;
        }
    }
    return false;
}

void make_lost_subscriber(ServerProcess& server, const std::string& name,
                          const std::string& topic) {
    TestClient sub{server.port()};
    sub.connect_as(name);
    sub.send_frame("SUBSCRIBE " + topic);
    sub.barrier();
    sub.drop();
    wait_lost(server, name);
}

}  // namespace pubsubx::testing
