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
#include <cstdlib>
#include <cstring>
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
    if (!exit_code_) {
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
    kill(pid_, signal);
}

std::optional<int> ChildProcess::wait_exit(Millis timeout) {
    if (exit_code_) {
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

void TestClient::connect_as(std::string_view name) {
    send_frame("CONNECT " + std::string{name});
    const auto reply = read_frame();
    if (reply != kConnAccepted) {
        throw std::runtime_error("CONNECT " + std::string{name} +
                                 " was answered with: " + reply.value_or("(nothing)"));
    }
}

void TestClient::barrier() {
    const std::string topic = "barrier-" + std::to_string(fd_) + "-" + std::to_string(getpid());
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
    std::string received;
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
