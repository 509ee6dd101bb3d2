// Hostile and broken peers against the real server, one test per row of docs/robustness.md:
// each limit is hit over real loopback TCP, and the test checks the error frame the peer gets,
// the server's log line, and that other clients are untouched.
#include <doctest/doctest.h>
#include <signal.h>

#include <fstream>
#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

using namespace pubsubx::testing;

namespace {

// A connected client that can still publish and receive proves the server is fine.
void check_server_serves(ServerProcess& server) {
    TestClient probe{server.port()};
    probe.connect_as("probe-" + std::to_string(probe.local_port()));
    probe.barrier();
}

// The kernel's keepalive timer state ("tr" in /proc/net/tcp: 2 means keepalive) of the
// server's end of the connection from `client_port` to `server_port`, or -1 if not found.
int server_socket_timer(std::uint16_t server_port, std::uint16_t client_port) {
    std::ifstream table{"/proc/net/tcp"};
    std::string line;
    std::getline(table, line);  // header
    while (std::getline(table, line)) {
        std::istringstream fields{line};
        std::string slot, local, remote, state, queues, timer;
        fields >> slot >> local >> remote >> state >> queues >> timer;
        const auto port_of = [](const std::string& address) {
            return std::stoi(address.substr(address.find(':') + 1), nullptr, 16);
        };
        if (port_of(local) == server_port && port_of(remote) == client_port) {
            return std::stoi(timer.substr(0, timer.find(':')), nullptr, 16);
        }
    }
    return -1;
}

}  // namespace

TEST_CASE("a connection that sends no CONNECT is closed after --connect-timeout") {
    ServerProcess server{{"--connect-timeout", "0.3"}};
    TestClient silent{server.port()};
    TestClient partial{server.port()};
    partial.send_raw("CONNECT sl");  // a slowloris: a frame that never ends
    TestClient named{server.port()};
    named.connect_as("named");
    CHECK(silent.read_frame(2000ms) == "ERROR: No CONNECT <name> received within 0.3 s");
    CHECK(silent.wait_closed());
    CHECK(partial.read_frame(2000ms) == "ERROR: No CONNECT <name> received within 0.3 s");
    CHECK(partial.wait_closed());
    CHECK(server.wait_for_output("ERROR: Closing a connection that sent no valid CONNECT within"));
    named.barrier();  // a connected client is not subject to the deadline
    check_server_serves(server);
}

TEST_CASE("--connect-timeout 0 lets a pending connection wait") {
    ServerProcess server{{"--connect-timeout", "0", "--write-timeout", "0.05"}};
    TestClient silent{server.port()};
    CHECK_FALSE(silent.wait_closed(400ms));
    silent.connect_as("late");
}

TEST_CASE("connections beyond --max-connections get an error and are closed") {
    ServerProcess server{{"--max-connections", "2"}};
    auto first = std::make_unique<TestClient>(server.port());
    TestClient second{server.port()};
    first->connect_as("first");
    second.connect_as("second");
    TestClient third{server.port()};
    CHECK(third.read_frame() == "ERROR: Server is full, try again later");
    CHECK(third.wait_closed());
    CHECK(server.wait_for_output("ERROR: Refusing connections: 2 are open (--max-connections 2)"));
    first->send_frame("DISCONNECT");
    CHECK(first->wait_closed());
    first.reset();
    CHECK(server.wait_for_output("INFO: Accepting connections again"));
    TestClient fourth{server.port()};
    fourth.connect_as("fourth");
    fourth.barrier();
}

TEST_CASE("--max-connections 0 means no limit") {
    ServerProcess server{{"--max-connections", "0"}};
    std::vector<std::unique_ptr<TestClient>> clients;
    for (int i = 0; i < 50; ++i) {
        clients.push_back(std::make_unique<TestClient>(server.port()));
        clients.back()->connect_as("c" + std::to_string(i));
    }
    for (auto& client : clients) {
        client->barrier();  // every one is served, not just accepted
    }
    server.send_signal(SIGUSR1);
    CHECK(server.wait_for_output("connections_refused=0"));
    CHECK(server.wait_for_output("connections=50"));
    CHECK(server.output().find("Refusing connections") == std::string::npos);
    CHECK(server.output().find("--max-connections lowered") == std::string::npos);
}

TEST_CASE("--max-connections is lowered to fit the descriptor limit, raised to the hard one") {
    // The soft limit 64 is raised to the hard limit 128; 32 descriptors are kept back.
    ServerProcess server{{}, ChildLimits::descriptors_at({64, 128})};
    CHECK(server.wait_for_output(
        "INFO: --max-connections lowered from 65536 to 96: the file descriptor limit is 128"));
    std::vector<std::unique_ptr<TestClient>> clients;
    for (int i = 0; i < 96; ++i) {
        clients.push_back(std::make_unique<TestClient>(server.port()));
        clients.back()->connect_as("c" + std::to_string(i));
    }
    TestClient over{server.port()};
    CHECK(over.read_frame() == "ERROR: Server is full, try again later");
    CHECK(over.wait_closed());
    clients.back()->barrier();
}

TEST_CASE("out of file descriptors, a client is told the server is full; one line per episode") {
    // No connection limit: only the descriptor limit (64) stops connections.
    ServerProcess server{{"--max-connections", "0"}, ChildLimits::descriptors_at({64, 64})};
    std::vector<std::unique_ptr<TestClient>> clients;
    std::vector<std::unique_ptr<TestClient>> refused;
    for (int i = 0; i < 80 && refused.size() < 5; ++i) {
        auto client = std::make_unique<TestClient>(server.port());
        client->send_frame("CONNECT c" + std::to_string(i));
        const auto reply = client->read_frame();
        REQUIRE_MESSAGE(reply, "connection ", i, " got no answer");
        if (*reply == "ERROR: Server is full, try again later") {
            CHECK(client->wait_closed());
            refused.push_back(std::move(client));
        } else {
            REQUIRE(*reply == "OK: Conn accepted");
            clients.push_back(std::move(client));
        }
    }
    CHECK(refused.size() == 5);
    CHECK(clients.size() > 40);
    std::this_thread::sleep_for(400ms);  // the old code logged an error every 100 ms
    const std::string refusing = "ERROR: Refusing connections: out of file descriptors";
    const std::string& log = server.output();
    const std::size_t first = log.find(refusing);
    CHECK(first != std::string::npos);
    CHECK(log.find(refusing, first + 1) == std::string::npos);
    CHECK(log.find("Cannot accept") == std::string::npos);
    clients.front()->send_frame("DISCONNECT");
    CHECK(clients.front()->wait_closed());
    clients.erase(clients.begin());
    // The server may still be closing that descriptor when the peer sees the close.
    std::unique_ptr<TestClient> again;
    for (int attempt = 0; attempt < 20 && !again; ++attempt) {
        auto client = std::make_unique<TestClient>(server.port());
        client->send_frame("CONNECT again");
        if (client->read_frame() == "OK: Conn accepted") {
            again = std::move(client);
        } else {
            std::this_thread::sleep_for(50ms);
        }
    }
    REQUIRE(again);
    again->barrier();
    CHECK(server.wait_for_output("INFO: Accepting connections again"));
}

TEST_CASE("a topic over --max-topic-length gets an error; the connection goes on") {
    ServerProcess server{{"--max-topic-length", "8"}};
    TestClient c{server.port()};
    c.connect_as("c");
    c.send_frame("SUBSCRIBE " + std::string(9, 't'));
    CHECK(c.read_frame() == "ERROR: Topic too long (the limit is 8 bytes)");
    c.send_frame("PUBLISH " + std::string(9, 't') + " data");
    CHECK(c.read_frame() == "ERROR: Topic too long (the limit is 8 bytes)");
    CHECK(server.wait_for_output("ERROR: Client 'c' used a topic of 9 bytes (the limit is 8)"));
    c.send_frame("SUBSCRIBE " + std::string(8, 't'));
    c.send_frame("PUBLISH " + std::string(8, 't') + " fits");
    CHECK(c.read_frame() == std::string(8, 't') + " fits");
}

TEST_CASE("subscriptions beyond --max-topics get an error; 0 means no limit") {
    SUBCASE("limit 2") {
        ServerProcess server{{"--max-topics", "2"}};
        TestClient c{server.port()};
        c.connect_as("c");
        c.send_frame("SUBSCRIBE a");
        c.send_frame("SUBSCRIBE b");
        c.send_frame("SUBSCRIBE c");
        CHECK(c.read_frame() == "ERROR: Too many subscriptions (the limit is 2 per client)");
        CHECK(server.wait_for_output("ERROR: Client 'c' reached the limit of 2 subscriptions"));
        c.send_frame("PUBLISH b still subscribed");
        CHECK(c.read_frame() == "b still subscribed");
        check_server_serves(server);
    }
    SUBCASE("no limit") {
        ServerProcess server{{"--max-topics", "0", "--quiet"}};
        TestClient c{server.port()};
        c.connect_as("c");
        std::string frames;
        for (int i = 0; i < 20'000; ++i) {  // twice the default limit
            frames += "SUBSCRIBE t" + std::to_string(i) + "\n\nx";
        }
        c.send_raw(frames);
        c.send_frame("PUBLISH t19999 last");
        CHECK(c.read_frame() == "t19999 last");
    }
}

TEST_CASE("beyond --max-lost-clients the longest-lost client is removed") {
    ServerProcess server{{"--max-lost-clients", "1"}};
    make_lost_subscriber(server, "old", "t");
    make_lost_subscriber(server, "new", "t");
    CHECK(server.wait_for_output("Client 'old' removed (more than 1 lost clients"));
    TestClient back_new{server.port()};
    back_new.send_frame("CONNECT new");
    CHECK(back_new.read_frame() == "RESTORED new");
    TestClient back_old{server.port()};
    back_old.send_frame("CONNECT old");
    CHECK(back_old.read_frame() == "OK: Conn accepted");
}

TEST_CASE("--max-total-queue bounds the bytes queued for all clients together") {
    // Two lost subscribers and 100-byte frames: the lost clients together may hold three
    // quarters of the cap (7 frames), so a connected subscriber that keeps up loses nothing.
    ServerProcess server{{"--max-total-queue", "1000", "--max-queue", "0"}};
    make_lost_subscriber(server, "x", "t");
    make_lost_subscriber(server, "y", "t");
    TestClient live{server.port()};
    live.connect_as("live");
    live.send_frame("SUBSCRIBE t");
    live.barrier();
    TestClient pub{server.port()};
    pub.connect_as("pub");
    for (int i = 0; i < 10; ++i) {
        const std::string payload = std::to_string(i) + std::string(94, 'p');
        pub.send_frame("PUBLISH t " + payload);
        CHECK(live.read_frame() == "t " + payload);  // one at a time: the live queue stays short
    }
    CHECK(server.wait_for_output(
        "ERROR: Queued bytes of all clients reached the global cap (1000 bytes, of which lost "
        "clients may hold 750)"));
    TestClient y{server.port()};
    y.send_frame("CONNECT y");
    CHECK(y.read_frame() == "RESTORED y");
    CHECK(y.read_frame() == "t");
    std::vector<std::string> restored;
    while (auto frame = y.read_frame(300ms)) {
        restored.push_back(*frame);
    }
    REQUIRE(!restored.empty());
    CHECK(restored.size() < 10);
    CHECK(restored.back() == "t 9" + std::string(94, 'p'));  // the newest message is kept
}

TEST_CASE("a consumer whose queue overflows past --slow-consumer-grace is cut off") {
    ServerProcess server{{"--max-queue", "100000", "--slow-consumer-grace", "0.2",
                          "--write-timeout", "0", "--lost-timeout", "1"}};
    TestClient slow{server.port(), 4096};
    slow.connect_as("slow");
    slow.send_frame("SUBSCRIBE t");
    slow.barrier();
    TestClient pub{server.port()};
    pub.connect_as("pub");
    CHECK(publish_until_logged(server, pub, "ERROR: Client 'slow' cut off", 50ms, 100));
    CHECK(server.wait_for_output("Client 'slow' lost; keeping its 1 subscription(s)"));
    CHECK(server.output().find("Client 'pub' lost") == std::string::npos);
    pub.barrier();  // the publisher was never stalled
    check_server_serves(server);
    slow.drop(true);
    {
        TestClient back{server.port()};
        back.send_frame("CONNECT slow");
        CHECK(back.read_frame() == "RESTORED slow");
        back.drop(true);
    }
    // Lost again by its own reset: it expires after --lost-timeout like any lost client.
    CHECK(server.wait_for_output("Client 'slow' removed (retention period of 1 s ended", 3s));
}

TEST_CASE("a peer that stops reading is lost after --write-timeout") {
    ServerProcess server{{"--write-timeout", "0.3", "--slow-consumer-grace", "0"}};
    TestClient stalled{server.port(), 4096};
    stalled.connect_as("stalled");
    stalled.send_frame("SUBSCRIBE t");
    stalled.barrier();
    TestClient pub{server.port()};
    pub.connect_as("pub");
    publish_bulk(pub, 300, 60'000);  // far more than the socket buffers hold
    CHECK(server.wait_for_output(
        "ERROR: Client 'stalled' stopped reading: its write made no progress", 5000ms));
    CHECK(server.wait_for_output("Client 'stalled' lost"));
    pub.barrier();
}

TEST_CASE("--write-timeout 0 and --slow-consumer-grace 0 never cut a stalled reader off") {
    ServerProcess server{{"--write-timeout", "0", "--slow-consumer-grace", "0", "--connect-timeout",
                          "0.05", "--max-queue", "100000"}};
    TestClient stalled{server.port(), 4096};
    stalled.connect_as("stalled");
    stalled.send_frame("SUBSCRIBE t");
    stalled.barrier();
    TestClient pub{server.port()};
    pub.connect_as("pub");
    publish_bulk(pub, 300, 60'000);
    pub.barrier();
    CHECK(server.wait_for_output("ERROR: Queue of client 'stalled' is full"));
    // The sweep runs every 12 ms (for the connect timeout); give it many chances.
    CHECK_FALSE(server.wait_for_output("Client 'stalled' lost", 500ms));
    CHECK(server.output().find("stopped reading") == std::string::npos);
}

TEST_CASE("--max-frame 0 means no frame limit") {
    ServerProcess server{{"--max-frame", "0", "--max-queue", "0", "--quiet"}};
    TestClient c{server.port()};
    c.connect_as("c");
    c.send_frame("SUBSCRIBE t");
    const std::string big(3 * 1024 * 1024, 'x');  // three times the default limit
    c.send_frame("PUBLISH t " + big);
    CHECK(c.read_frame(10s) == "t " + big);
}

TEST_CASE("a wrong secret gets 'Not authorized' and leaves the lost client's queue intact") {
    ServerProcess server;
    TestClient sub{server.port()};
    sub.send_frame("CONNECT sub k3y");
    CHECK(sub.read_frame() == "OK: Conn accepted");
    sub.send_frame("SUBSCRIBE t");
    sub.barrier();
    sub.drop();
    REQUIRE(server.wait_for_output("Client 'sub' lost"));
    TestClient pub{server.port()};
    pub.connect_as("pub");
    pub.send_frame("PUBLISH t for the owner only");
    pub.barrier();

    TestClient thief{server.port(), 0, "127.0.0.2"};
    thief.send_frame("CONNECT sub guess");
    CHECK(thief.read_frame() == "ERROR: Not authorized");
    CHECK(thief.wait_closed());
    CHECK(server.wait_for_output(
        "ERROR: Refused CONNECT 'sub' from 127.0.0.2: wrong secret; that source waits 0.1 s"));
    TestClient no_secret{server.port(), 0, "127.0.0.3"};
    std::this_thread::sleep_for(150ms);  // past the name's back-off, so this one is checked
    no_secret.send_frame("CONNECT sub");
    CHECK(no_secret.read_frame() == "ERROR: Not authorized");
    CHECK(server.wait_for_output("ERROR: Refused CONNECT 'sub' from 127.0.0.3: no secret given"));

    TestClient owner{server.port()};
    owner.send_frame("CONNECT sub k3y");
    CHECK(owner.read_frame() == "RESTORED sub");
    CHECK(owner.read_frame() == "t");
    CHECK(owner.read_frame() == "t for the owner only");
}

TEST_CASE("the right secret takes over a half-open connection; no secret keeps the old rule") {
    ServerProcess server;
    TestClient half_open{server.port()};  // the peer vanished, but no FIN or RST arrived
    half_open.send_frame("CONNECT sub k3y");
    CHECK(half_open.read_frame() == "OK: Conn accepted");
    half_open.send_frame("SUBSCRIBE t");
    half_open.barrier();

    TestClient plain{server.port()};
    plain.send_frame("CONNECT sub");
    CHECK(plain.read_frame() == "ERROR: Name already taken");

    TestClient owner{server.port()};
    owner.send_frame("CONNECT sub k3y");
    CHECK(owner.read_frame() == "RESTORED sub");
    CHECK(owner.read_frame() == "t");
    CHECK(half_open.wait_closed());
    CHECK(server.wait_for_output("resumed with its secret while connected"));
    TestClient pub{server.port()};
    pub.connect_as("pub");
    pub.send_frame("PUBLISH t to the new connection");
    CHECK(owner.read_frame() == "t to the new connection");
}

TEST_CASE("--require-secret refuses a CONNECT without one; an invalid secret is refused") {
    ServerProcess server{{"--require-secret"}};
    TestClient plain{server.port()};
    plain.send_frame("CONNECT plain");
    CHECK(plain.read_frame() ==
          "ERROR: Not authorized: this server requires CONNECT <name> <secret>");
    CHECK(plain.wait_closed());
    TestClient spaced{server.port()};
    spaced.send_frame("CONNECT spaced two words");
    CHECK(spaced.read_frame() ==
          "ERROR: Invalid secret (1 to 128 bytes, no spaces or control characters)");
    CHECK(spaced.wait_closed());
    TestClient good{server.port()};
    good.send_frame("CONNECT good s3cret");
    CHECK(good.read_frame() == "OK: Conn accepted");
}

TEST_CASE("TCP keepalive is on for every connection; --keepalive 0 turns it off") {
    for (const char* idle : {"60", "0"}) {
        CAPTURE(idle);
        ServerProcess server{{"--keepalive", idle}};
        TestClient c{server.port()};
        c.connect_as("c");
        c.barrier();
        const int expected_timer = std::string{idle} == "0" ? 0 : 2;
        CHECK(server_socket_timer(server.port(), c.local_port()) == expected_timer);
    }
}

TEST_CASE("a log reader that goes away does not kill the server") {
    ServerProcess server;
    server.close_output();
    TestClient c{server.port()};
    c.connect_as("c");  // logs a line into a pipe nobody reads: EPIPE, not SIGPIPE
    c.send_frame("SUBSCRIBE t");
    c.barrier();
    server.send_signal(SIGTERM);
    CHECK(server.wait_exit() == 0);
}

TEST_CASE("a log reader that stops reading neither blocks the server nor gets torn lines") {
    ServerProcess server{{"--verbose"}};
    server.output();  // from here on nobody reads the log pipe (64 KiB)
    TestClient sub{server.port()};
    sub.connect_as("sub");
    sub.send_frame("SUBSCRIBE t");
    sub.barrier();
    TestClient pub{server.port()};
    pub.connect_as("pub");
    constexpr int kMessages = 3000;  // each logs a line of about 250 bytes: 750 KB in all
    std::string batch;
    for (int i = 0; i < kMessages; ++i) {
        pubsubx::append_frame(batch,
                              "PUBLISH t " + std::to_string(i) + " " + std::string(200, 'd'));
    }
    pub.send_raw(batch);
    int received = 0;
    while (received < kMessages) {
        const auto frame = sub.read_frame(5000ms);
        REQUIRE_MESSAGE(frame, "the server stopped delivering after ", received, " messages");
        CHECK(frame->starts_with("t " + std::to_string(received) + " "));
        ++received;
    }
    const std::regex kWholeLine{R"(^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (INFO|ERROR): )"};
    const std::size_t seen = server.output().size();
    server.send_signal(SIGUSR1);
    REQUIRE(server.wait_for_output("INFO: Counters: ", 5000ms, seen));
    const std::string& log = server.output();
    const std::size_t at = log.find("log_lines_dropped=", seen);
    REQUIRE(at != std::string::npos);
    CHECK(std::stoi(log.substr(at + std::string_view{"log_lines_dropped="}.size())) > 0);
    for (std::size_t from = 0; from < log.size();) {
        const std::size_t end = log.find('\n', from);
        const std::string line = log.substr(from, end - from);
        // Whole lines only: each one starts with its timestamp and level.
        CHECK_MESSAGE(std::regex_search(line, kWholeLine), line);
        if (end == std::string::npos) {
            break;
        }
        from = end + 1;
    }
}

TEST_CASE("SIGUSR1 prints the counters and the server goes on") {
    ServerProcess server{{"--quiet"}};
    TestClient c{server.port()};
    c.connect_as("c");
    c.barrier();
    server.send_signal(SIGUSR1);
    CHECK(server.wait_for_output("INFO: Counters: published=1 delivered=1 dropped=0"));
    CHECK(server.wait_for_output("clients=1 lost_now=0 queued_bytes=0 connections=1"));
    c.barrier();
}

TEST_CASE("the shutdown line has every counter") {
    ServerProcess server;
    TestClient c{server.port()};
    c.connect_as("c");
    c.barrier();
    server.send_signal(SIGTERM);
    CHECK(server.wait_exit() == 0);
    CHECK(server.output().find("INFO: Shutting down; published=1 delivered=1 dropped=0") !=
          std::string::npos);
    CHECK(server.output().find("connections_accepted=1 connections_refused=0") !=
          std::string::npos);
}

TEST_CASE("a topic with control bytes or invalid UTF-8 gets an error; the connection goes on") {
    ServerProcess server;
    TestClient c{server.port()};
    c.connect_as("c");
    const std::vector<std::string> topics{"line\nINFO:", "esc\x1b[2J", std::string{"nul\0x", 5},
                                          "bad\xff"};
    for (const std::string& topic : topics) {
        c.send_frame("SUBSCRIBE " + topic);
        CHECK(c.read_frame() == "ERROR: Invalid topic (UTF-8 with no control characters)");
        c.send_frame("PUBLISH " + topic + " data");
        CHECK(c.read_frame() == "ERROR: Invalid topic (UTF-8 with no control characters)");
    }
    CHECK(server.wait_for_output("ERROR: Client 'c' used an invalid topic 'line\\nINFO:'"));
    CHECK(server.output().find("\nINFO:'") == std::string::npos);  // no forged line
    c.barrier();                                                   // still connected and served
}
