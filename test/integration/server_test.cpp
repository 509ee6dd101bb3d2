// pubsubx-server over real loopback TCP: each test starts its own server on an ephemeral port
// and speaks the wire protocol byte for byte.
#include <doctest/doctest.h>
#include <signal.h>

#include <chrono>
#include <string>

#include "support.hpp"

using namespace pubsubx::testing;

TEST_CASE("two clients publish and subscribe") {
    ServerProcess server;
    TestClient alice{server.port()}, bob{server.port()};
    alice.connect_as("alice");
    bob.connect_as("bob");
    bob.send_frame("SUBSCRIBE news");
    bob.barrier();
    alice.send_frame("PUBLISH news hello  big world ");
    alice.send_frame("PUBLISH news");
    alice.send_frame("PUBLISH elsewhere nobody listens");
    CHECK(bob.read_frame() == "news hello  big world ");
    CHECK(bob.read_frame() == "news ");
    CHECK_FALSE(bob.read_frame(200ms).has_value());
    CHECK(server.wait_for_output("Client 'bob' subscribed to 'news'"));
}

TEST_CASE("many frames in one write and one frame over many writes") {
    ServerProcess server;
    TestClient sub{server.port()}, pub{server.port()};
    sub.send_raw("CONNECT sub\n\nxSUBSCRIBE t\n\nx");
    CHECK(sub.read_frame() == "OK: Conn accepted");
    sub.barrier();
    pub.connect_as("pub");
    const std::string frames = "PUBLISH t one\n\nxPUBLISH t two\n\nx";
    for (char byte : frames) {
        pub.send_raw(std::string_view{&byte, 1});
    }
    CHECK(sub.read_frame() == "t one");
    CHECK(sub.read_frame() == "t two");
}

TEST_CASE("a publisher subscribed to its topic gets its own messages") {
    ServerProcess server;
    TestClient me{server.port()};
    me.connect_as("me");
    me.send_frame("SUBSCRIBE echo");
    me.send_frame("PUBLISH echo myself");
    CHECK(me.read_frame() == "echo myself");
}

TEST_CASE("a name that is connected is taken; the holder is untouched") {
    ServerProcess server;
    TestClient first{server.port()}, second{server.port()};
    first.connect_as("alice");
    first.send_frame("SUBSCRIBE t");
    second.send_frame("CONNECT alice");
    CHECK(second.read_frame() == "ERROR: Name already taken");
    CHECK(second.wait_closed());
    first.send_frame("PUBLISH t still here");
    CHECK(first.read_frame() == "t still here");
}

TEST_CASE("an abruptly closed client gets its topics and missed messages back in order") {
    ServerProcess server;
    TestClient pub{server.port()};
    pub.connect_as("pub");
    {
        TestClient sub{server.port()};
        sub.connect_as("sub");
        sub.send_frame("SUBSCRIBE a");
        sub.send_frame("SUBSCRIBE b");
        sub.barrier();
        sub.drop(true);
    }
    wait_lost(server, "sub");
    for (int i = 0; i < 100; ++i) {
        pub.send_frame("PUBLISH " + std::string{i % 2 == 0 ? "a" : "b"} + " m" + std::to_string(i));
    }
    pub.barrier();
    TestClient back{server.port()};
    back.send_frame("CONNECT sub");
    CHECK(back.read_frame() == "RESTORED sub");
    CHECK(back.read_frame() == "a b");
    for (int i = 0; i < 100; ++i) {
        CHECK(back.read_frame() == std::string{i % 2 == 0 ? "a" : "b"} + " m" + std::to_string(i));
    }
    pub.send_frame("PUBLISH a live");
    CHECK(back.read_frame() == "a live");
    CHECK(server.wait_for_output("Client 'sub' restored with 2 subscription(s) and 100 queued"));
}

TEST_CASE("a client that vanishes mid-frame is lost, and the partial frame is discarded") {
    ServerProcess server;
    {
        TestClient sub{server.port()};
        sub.connect_as("sub");
        sub.send_frame("SUBSCRIBE t");
        sub.barrier();
        sub.send_raw("PUBLISH t half a fra");
        sub.drop();
    }
    wait_lost(server, "sub");
    TestClient back{server.port()};
    back.send_frame("CONNECT sub");
    CHECK(back.read_frame() == "RESTORED sub");
    CHECK(back.read_frame() == "t");
    CHECK_FALSE(back.read_frame(200ms).has_value());
}

TEST_CASE("a lost client expires after --lost-timeout") {
    ServerProcess server{{"--lost-timeout", "0.5"}};
    make_lost_subscriber(server, "sub", "t");
    const auto lost_at = std::chrono::steady_clock::now();
    REQUIRE(server.wait_for_output("Client 'sub' removed (retention period of 0.5 s ended", 3s));
    // Kept its whole retention period (the log line came after the loss was seen).
    CHECK(std::chrono::steady_clock::now() - lost_at >= 400ms);
    TestClient again{server.port()};
    again.connect_as("sub");  // a new client: OK, not RESTORED, and without the old topic
    TestClient pub{server.port()};
    pub.connect_as("pub");
    pub.send_frame("PUBLISH t nobody");
    pub.barrier();
    CHECK(server.output().find("Client 'sub' subscribed to 't'") ==
          server.output().rfind("Client 'sub' subscribed to 't'"));
    CHECK_FALSE(again.read_frame(200ms).has_value());
}

TEST_CASE("DISCONNECT forgets the client and closes the connection") {
    ServerProcess server;
    {
        TestClient c{server.port()};
        c.connect_as("c");
        c.send_frame("SUBSCRIBE t");
        c.send_frame("DISCONNECT");
        CHECK(c.wait_closed());
    }
    CHECK(server.wait_for_output("Client 'c' removed (disconnected)"));
    TestClient again{server.port()};
    again.connect_as("c");
}

TEST_CASE("DISCONNECT in the same read as a refused PUBLISH still writes the error first") {
    ServerProcess server;
    TestClient c{server.port()};
    c.connect_as("c");
    c.send_raw("PUBLISH a/+ x\n\nxDISCONNECT\n\nx");
    CHECK(c.wait_closed());
    CHECK(c.read_frame() == "ERROR: Wildcards are not allowed in a PUBLISH topic");
    CHECK_FALSE(c.read_frame(0ms).has_value());
}

TEST_CASE("a frame over --max-frame closes only the offender, which keeps its queue") {
    ServerProcess server{{"--max-frame", "1024"}};
    TestClient good{server.port()}, bad{server.port()};
    good.connect_as("good");
    good.send_frame("SUBSCRIBE t");
    bad.connect_as("bad");
    bad.send_frame("SUBSCRIBE t");
    bad.barrier();
    bad.send_raw("PUBLISH t " + std::string(4000, 'x'));
    CHECK(bad.read_frame() == "ERROR: Frame too long (the limit is 1024 bytes)");
    CHECK(bad.wait_closed());
    CHECK(server.wait_for_output("ERROR: Closing client 'bad': a frame exceeds 1024 bytes"));
    good.send_frame("PUBLISH t " + std::string(1000, 'y'));  // within the limit
    CHECK(good.read_frame() == "t " + std::string(1000, 'y'));
    good.barrier();
    TestClient back{server.port()};
    back.send_frame("CONNECT bad");
    CHECK(back.read_frame() == "RESTORED bad");
    CHECK(back.read_frame() == "t");
    CHECK(back.read_frame() == "t " + std::string(1000, 'y'));
}

TEST_CASE("a first frame that is not a valid CONNECT gets an error and is closed") {
    ServerProcess server;
    SUBCASE("another command") {
        TestClient c{server.port()};
        c.send_frame("SUBSCRIBE t");
        CHECK(c.read_frame() == "ERROR: Expected CONNECT <name> as the first frame");
        CHECK(c.wait_closed());
    }
    SUBCASE("a name over 64 bytes") {
        TestClient c{server.port()};
        c.send_frame("CONNECT " + std::string(65, 'n'));
        CHECK(c.read_frame()->starts_with("ERROR: Invalid name"));
        CHECK(c.wait_closed());
    }
    SUBCASE("binary garbage") {
        TestClient c{server.port()};
        constexpr char kGarbage[] = "\x00\xff\x13garbage\x01\n\nx";
        c.send_raw(std::string_view{kGarbage, sizeof kGarbage - 1});
        CHECK(c.read_frame()->starts_with("ERROR: "));
        CHECK(c.wait_closed());
    }
    TestClient fine{server.port()};
    fine.connect_as("fine");
}

TEST_CASE("a name or secret that is not UTF-8 without control characters is refused") {
    ServerProcess server;
    for (const std::string name :
         {"\xff", "caf\xc3", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80",
          "a\xc2\x9b"
          "31m",
          "a\x1b"
          "b"}) {
        TestClient c{server.port()};
        c.send_frame("CONNECT " + name);
        CHECK(c.read_frame() ==
              "ERROR: Invalid name (1 to 64 bytes, no spaces or control characters)");
        CHECK(c.wait_closed());
    }
    TestClient bad_secret{server.port()};
    bad_secret.send_frame("CONNECT s \xc3\x28");
    CHECK(bad_secret.read_frame()->starts_with("ERROR: Invalid secret"));
    CHECK(bad_secret.wait_closed());
    CHECK(server.output().find("Client '") == std::string::npos);  // none was added
    TestClient fine{server.port()};
    fine.connect_as("caf\xc3\xa9");
    fine.barrier();
}

TEST_CASE("garbage from a connected client is ignored") {
    ServerProcess server;
    TestClient c{server.port()};
    c.connect_as("c");
    constexpr char kGarbage[] = "\x00\x01\x02\xff\n\nxpublish t x\n\nxSUBSCRIBE\n\nx";
    c.send_raw(std::string_view{kGarbage, sizeof kGarbage - 1});
    c.send_frame("SUBSCRIBE t");
    c.send_frame("PUBLISH t ok");
    CHECK(c.read_frame() == "t ok");
}

TEST_CASE("a full queue drops the oldest messages, logs it, and keeps the newest") {
    // Each delivery frame is "t " + 6 bytes + delimiter = 11 bytes: 10 fit in 110.
    ServerProcess server{{"--max-queue", "110"}};
    make_lost_subscriber(server, "sub", "t");
    TestClient pub{server.port()};
    pub.connect_as("pub");
    for (int i = 100000; i < 100030; ++i) {
        pub.send_frame("PUBLISH t " + std::to_string(i));
    }
    pub.barrier();
    CHECK(server.wait_for_output("ERROR: Queue of client 'sub' is full at 110 bytes"));
    TestClient back{server.port()};
    back.send_frame("CONNECT sub");
    CHECK(back.read_frame() == "RESTORED sub");
    CHECK(back.read_frame() == "t");
    for (int i = 100020; i < 100030; ++i) {
        CHECK(back.read_frame() == "t " + std::to_string(i));
    }
    CHECK(server.wait_for_output("20 message(s) were dropped"));
}

TEST_CASE("messages are logged only with --verbose") {
    ServerProcess quiet_by_default;
    TestClient a{quiet_by_default.port()};
    a.connect_as("a");
    a.send_frame("PUBLISH t secret-payload");
    a.barrier();
    CHECK(quiet_by_default.output().find("secret-payload") == std::string::npos);

    ServerProcess verbose{{"--verbose"}};
    TestClient b{verbose.port()};
    b.connect_as("b");
    b.send_frame("PUBLISH t visible-payload");
    CHECK(verbose.wait_for_output("Client 'b' published to 't': visible-payload"));
}

TEST_CASE("peer text in the log is escaped: message data cannot forge a line") {
    ServerProcess server{{"--verbose"}};
    TestClient c{server.port()};
    c.connect_as("c");
    c.send_frame("SUBSCRIBE t");
    c.send_frame("PUBLISH t x\nERROR: forged\x1b[2J\\");
    CHECK(c.read_frame() == "t x\nERROR: forged\x1b[2J\\");  // delivered verbatim
    CHECK(server.wait_for_output(
        "INFO: Client 'c' published to 't': x\\nERROR: forged\\x1B[2J\\\\\n"));
    CHECK(server.output().find("\nERROR: forged") == std::string::npos);
    CHECK(server.output().find('\x1b') == std::string::npos);
}

TEST_CASE("--quiet logs only errors but still says where it listens") {
    ServerProcess server{{"--quiet"}};
    TestClient a{server.port()};
    a.connect_as("a");
    a.barrier();
    TestClient b{server.port()};
    b.send_frame("CONNECT a");
    CHECK(b.read_frame() == "ERROR: Name already taken");
    CHECK(server.wait_for_output("ERROR: Refused CONNECT 'a'"));
    CHECK(server.output().find("Client 'a' added") == std::string::npos);
}

TEST_CASE("SIGINT and SIGTERM stop the server with exit code 0") {
    for (int signal_number : {SIGINT, SIGTERM}) {
        ServerProcess server;
        TestClient c{server.port()};
        c.connect_as("c");
        server.send_signal(signal_number);
        CHECK(server.wait_exit() == 0);
        CHECK(server.output().find("Shutting down") != std::string::npos);
    }
}

TEST_CASE("command-line errors are reported with a non-zero exit code") {
    const std::string program = binary_path("PUBSUBX_SERVER");
    SUBCASE("a port out of range") {
        ChildProcess server{program, {"70000"}};
        CHECK(server.wait_exit() != 0);
    }
    SUBCASE("a negative timeout") {
        ChildProcess server{program, {"0", "--lost-timeout", "-1"}};
        CHECK(server.wait_exit() != 0);
    }
    SUBCASE("a bad bind address") {
        ChildProcess server{program, {"0", "--bind", "not-an-address"}};
        CHECK(server.wait_exit() == 2);
        CHECK(server.output().find("ERROR: Invalid --bind address") != std::string::npos);
    }
    SUBCASE("a port in use") {
        ServerProcess first;
        ChildProcess second{program, {std::to_string(first.port())}};
        CHECK(second.wait_exit() == 1);
        CHECK(second.output().find("ERROR: Cannot listen on 127.0.0.1:") != std::string::npos);
    }
    SUBCASE("--version") {
        ChildProcess server{program, {"--version"}};
        CHECK(server.wait_exit() == 0);
        CHECK(server.output().find("pubsubx-server 0.") != std::string::npos);
    }
}

TEST_CASE("every duration option refuses non-finite and out-of-range values with exit code 2") {
    const std::string program = binary_path("PUBSUBX_SERVER");
    for (const std::string option :
         {"--lost-timeout", "--slow-consumer-grace", "--connect-timeout", "--write-timeout"}) {
        for (const std::string value : {"nan", "inf", "-inf", "1e10", "31536001", "-1", "1s"}) {
            ChildProcess server{program, {"0", option, value}};
            CHECK_MESSAGE(server.wait_exit() == 2, option, " ", value);
            CHECK(server.output().find(option + ": '" + value +
                                       "' is not a number of seconds from 0 to 31536000") !=
                  std::string::npos);
        }
    }
    SUBCASE("the largest value, one year, keeps a lost client") {
        ServerProcess server{{"--lost-timeout", "31536000"}};
        make_lost_subscriber(server, "kept", "t");
        TestClient back{server.port()};
        back.send_frame("CONNECT kept");
        CHECK(back.read_frame() == "RESTORED kept");
    }
}
