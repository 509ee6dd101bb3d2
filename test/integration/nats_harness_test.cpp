// The cluster tests' backplane harness on its own, before any pubsubx cluster code: nats-server
// starts on a port it picked, answers NATS's wire protocol, comes back on the same port after a
// restart or a crash, and is gone after stop().
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <stdexcept>
#include <string>

#include "support.hpp"

using namespace pubsubx::testing;

namespace {

// A plain TCP connection that speaks just enough of NATS's text protocol to prove a server
// answers: the INFO greeting it sends first, then PING -> PONG.
class NatsWireProbe {
  public:
    explicit NatsWireProbe(std::uint16_t port)
        : fd_(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_port = htons(port);
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (fd_ < 0 || connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
            close(fd_);
            throw std::runtime_error("cannot connect to 127.0.0.1:" + std::to_string(port));
        }
    }
    ~NatsWireProbe() { close(fd_); }
    NatsWireProbe(const NatsWireProbe&) = delete;
    NatsWireProbe& operator=(const NatsWireProbe&) = delete;

    void send(std::string_view bytes) {
        REQUIRE(::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
                static_cast<ssize_t>(bytes.size()));
    }
    // Reads until `needle` has arrived; false on timeout or when the server closes.
    bool read_until(std::string_view needle, Millis timeout = 3000ms) {
        while (received_.find(needle) == std::string::npos) {
            if (!read_some(timeout)) {
                return false;
            }
        }
        return true;
    }
    // True when the server closes the connection within `timeout`.
    bool wait_closed(Millis timeout = 3000ms) {
        while (!closed_ && read_some(timeout)) {
        }
        return closed_;
    }
    const std::string& received() const { return received_; }

  private:
    bool read_some(Millis timeout) {
        pollfd readable{fd_, POLLIN, 0};
        char buffer[4096];
        if (closed_ || poll(&readable, 1, static_cast<int>(timeout.count())) <= 0) {
            return false;
        }
        const ssize_t count = recv(fd_, buffer, sizeof buffer, 0);
        closed_ = count <= 0;
        received_.append(buffer, count > 0 ? static_cast<std::size_t>(count) : 0);
        return !closed_;
    }

    int fd_;
    bool closed_ = false;
    std::string received_;
};

// Connects, expects the INFO greeting, and checks that PING is answered.
void check_answers_ping(std::uint16_t port) {
    NatsWireProbe probe{port};
    REQUIRE(probe.read_until("\r\n"));
    CHECK(probe.received().starts_with("INFO {"));
    // CONNECT {} leaves the connection verbose: nats-server answers +OK before the PONG.
    probe.send("CONNECT {}\r\nPING\r\n");
    CHECK(probe.read_until("PONG\r\n"));
}

}  // namespace

TEST_CASE("nats-server starts, restarts on the same port with a client connected, and stops") {
    NatsServerProcess nats;
    const std::uint16_t port = nats.port();
    REQUIRE(port != 0);
    CHECK(nats.url() == "nats://127.0.0.1:" + std::to_string(port));
    check_answers_ping(port);

    // A connection open across the restart leaves the old server's side of it in TIME_WAIT:
    // the new server must bind the port all the same, as it must under cluster traffic.
    NatsWireProbe connected{port};
    REQUIRE(connected.read_until("\r\n"));
    nats.restart();
    CHECK(connected.wait_closed());
    CHECK(nats.port() == port);
    check_answers_ping(port);

    const std::size_t before_stop = nats.output().size();
    nats.stop();
    CHECK(nats.wait_exit(0ms).has_value());
    // SIGTERM is a clean shutdown for nats-server, though its exit status is 1 then.
    CHECK(nats.wait_for_output("Server Exiting", 0ms, before_stop));
    CHECK_FALSE(port_accepts_connections(port));
}

TEST_CASE("a killed nats-server restarts on the same port") {
    NatsServerProcess nats;
    const std::uint16_t port = nats.port();
    nats.kill();
    CHECK(nats.wait_exit(0ms) == 128 + SIGKILL);
    CHECK_FALSE(port_accepts_connections(port));
    nats.restart();
    check_answers_ping(port);
}
