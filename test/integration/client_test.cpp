// pubsubx-client end to end: the real client binary driven through pipes against the real
// server on an ephemeral port.
#include <doctest/doctest.h>
#include <signal.h>

#include <string>
#include <thread>

#include "support.hpp"

using namespace pubsubx::testing;

namespace {

constexpr std::string_view kPrompt = "Enter command or (-h): ";

std::string client_path() {
    return binary_path("PUBSUBX_CLIENT");
}

// The client with its standard output thrown away: what it prints is what went to stderr.
class ClientStderr : public ChildProcess {
  public:
    static std::vector<std::string> through_shell(std::vector<std::string> args) {
        args.insert(args.begin(), {"-c", "exec \"$0\" \"$@\" >/dev/null", client_path()});
        return args;
    }
    explicit ClientStderr(std::vector<std::string> args, bool pipe_stdin = false)
        : ChildProcess("/bin/sh", through_shell(std::move(args)), pipe_stdin) {}
};

constexpr std::string_view kWildcardPublish =
    "ERROR: Wildcards are not allowed in a PUBLISH topic\n";

// The interactive client with the prompt forced on, as a person at a terminal sees it.
class InteractiveClient : public ChildProcess {
  public:
    static std::vector<std::string> with_prompt(std::vector<std::string> args) {
        args.insert(args.begin(), "--prompt");
        return args;
    }
    explicit InteractiveClient(std::vector<std::string> extra_args = {})
        : ChildProcess(client_path(), with_prompt(std::move(extra_args)), true) {}
    // Types a line and waits for `expected` to appear after what was printed before.
    bool type(std::string_view line, std::string_view expected) {
        const std::size_t from = output().size();
        write_stdin(std::string{line} + "\n");
        return wait_for_output(expected, 5000ms, from);
    }
};

}  // namespace

TEST_CASE("interactive session: connect, subscribe, receive, publish, disconnect") {
    ServerProcess server;
    const std::string port = std::to_string(server.port());
    InteractiveClient client;
    REQUIRE(client.wait_for_output(kPrompt));
    CHECK(client.type("connect " + port + " alice",
                      "INFO: Connection successfully established\n" + std::string{kPrompt}));
    CHECK(client.type("SUBSCRIBE news", kPrompt));
    REQUIRE(server.wait_for_output("Client 'alice' subscribed to 'news'"));
    TestClient publisher{server.port()};
    publisher.connect_as("bob");
    publisher.send_frame("PUBLISH news a b c");
    // On a fresh line below the prompt, and the prompt drawn again after it.
    CHECK(client.wait_for_output(std::string{kPrompt} + "\nTopic: news  Data: a b c\n" +
                                 std::string{kPrompt}));
    publisher.send_frame("SUBSCRIBE echo");
    publisher.barrier();
    CHECK(client.type("publish echo  two  spaces", kPrompt));
    CHECK(publisher.read_frame() == "echo  two  spaces");
    CHECK(client.type("subscribe news", "INFO: Already subscribed to 'news'\n"));
    CHECK(client.type("unsubscribe other", "INFO: Was not subscribed to 'other'\n"));
    CHECK(client.type("DISCONNECT", "INFO: Disconnected\n"));
    CHECK(server.wait_for_output("Client 'alice' removed (disconnected)"));
    client.close_stdin();
    CHECK(client.wait_exit() == 0);
}

TEST_CASE("interactive errors are explained in the original's words") {
    ServerProcess server;
    const std::string port = std::to_string(server.port());
    InteractiveClient client;
    CHECK(
        client.type("PUBLISH t x", "ERROR: Not connected: only CONNECT <port> <name> is accepted"));
    CHECK(client.type("SUBSCRIBE t", "ERROR: Not connected"));
    CHECK(client.type("CONNECT 70000 a", "ERROR: Wrong port '70000'"));
    CHECK(client.type("CONNECT " + port, "ERROR: Name is empty"));
    CHECK(client.type("CONNECT " + port + " " + std::string(65, 'n'),
                      "ERROR: Name must be 1 to 64 bytes"));
    CHECK(client.type("dance", "ERROR: Unknown command 'dance', to see help enter -h"));
    CHECK(client.type("-h", "PUBLISH <topic> <data>"));
    CHECK(client.type("CONNECT " + port + " a", "INFO: Connection successfully established"));
    CHECK(client.type("CONNECT " + port + " b", "ERROR: Already connected"));
    CHECK(client.type("SUBSCRIBE", "ERROR: Topic is empty"));
    CHECK(client.type("PUBLISH", "ERROR: Topic is empty"));
}

TEST_CASE("a refused PUBLISH is reported at the prompt and fails a script") {
    ServerProcess server;
    const std::string port = std::to_string(server.port());
    InteractiveClient client;
    CHECK(client.type("CONNECT " + port + " a", "INFO: Connection successfully established"));
    CHECK(client.type("PUBLISH a/+ x", std::string{kPrompt} + "\n" + std::string{kWildcardPublish} +
                                           std::string{kPrompt}));

    // The error for a script's last line comes after its DISCONNECT was sent, before the close.
    ChildProcess script{client_path(), {}, true};
    script.write_stdin("connect " + port + " b\npublish a/+ x\n");
    script.close_stdin();
    CHECK(script.wait_exit() == 1);
    CHECK(script.output() == "INFO: Connection successfully established\n" +
                                 std::string{kWildcardPublish} + "INFO: Disconnected\n");
}

TEST_CASE("connection refused and name taken") {
    ServerProcess server;
    const std::string port = std::to_string(server.port());
    TestClient holder{server.port()};
    holder.connect_as("taken");
    InteractiveClient client;
    // Both lines at once, as when pasted: the one after the refused CONNECT still runs.
    client.write_stdin("CONNECT " + port + " taken\nCONNECT " + port + " free\n");
    CHECK(client.wait_for_output(
        "ERROR: Name already taken\nINFO: Connection successfully established\n", 3000ms));

    std::uint16_t closed_port = 0;
    {
        ServerProcess gone;
        closed_port = gone.port();
    }
    InteractiveClient other;
    CHECK(other.type("CONNECT " + std::to_string(closed_port) + " x",
                     "ERROR: Cannot connect to localhost:" + std::to_string(closed_port) +
                         ": Connection refused"));
}

TEST_CASE("a script goes on after a refused CONNECT and ends at end of input") {
    ServerProcess server;
    const std::string port = std::to_string(server.port());
    TestClient holder{server.port()};
    holder.connect_as("taken");
    ChildProcess script{client_path(), {}, true};
    script.write_stdin("CONNECT " + port + " taken\nCONNECT " + port + " bob\n");
    script.close_stdin();
    CHECK(script.wait_exit(3000ms) == 1);
    CHECK(script.output() ==
          "ERROR: Name already taken\nINFO: Connection successfully established\n"
          "INFO: Disconnected\n");
}

TEST_CASE("Ctrl-C, SIGTERM and end of input quit while a CONNECT waits for its answer") {
    for (const int signal : {SIGINT, SIGTERM, 0}) {
        CAPTURE(signal);  // 0: end of input (Ctrl-D at the prompt)
        SilentServer silent;
        const std::string port = std::to_string(silent.port());
        InteractiveClient client;
        client.write_stdin("CONNECT " + port + " x\n");
        REQUIRE(silent.accept_and_read("CONNECT x"));
        if (signal == 0) {
            client.close_stdin();
        } else {
            client.send_signal(signal);
        }
        CHECK(client.wait_exit(2000ms) == 0);
        CHECK(client.output().find("ERROR: No answer from localhost:" + port +
                                   " to CONNECT; gave up") != std::string::npos);
    }
    // A script stopped that way did not do what it was asked: it says so and exits 1.
    SilentServer silent;
    const std::string port = std::to_string(silent.port());
    ChildProcess script{client_path(), {}, true};
    script.write_stdin("CONNECT " + port + " y\nPUBLISH t never\n");
    REQUIRE(silent.accept_and_read("CONNECT y"));
    script.send_signal(SIGTERM);
    CHECK(script.wait_exit(2000ms) == 1);
    CHECK(script.output() == "ERROR: No answer from localhost:" + port + " to CONNECT; gave up\n");
}

TEST_CASE("a script whose input ends while a CONNECT waits gives up after --answer-timeout") {
    SilentServer silent;
    const std::string port = std::to_string(silent.port());
    ChildProcess script{client_path(), {"--answer-timeout", "0.3"}, true};
    script.write_stdin("CONNECT " + port + " z\nPUBLISH t never\n");
    REQUIRE(silent.accept_and_read("CONNECT z"));
    script.close_stdin();
    // Still waiting for the answer at first: a slow server is not given up at once...
    CHECK_FALSE(script.wait_exit(100ms).has_value());
    // ...but a silent one is, and the script says it failed.
    CHECK(script.wait_exit(2000ms) == 1);
    CHECK(script.output() == "ERROR: No answer from localhost:" + port + " to CONNECT; gave up\n");
}

TEST_CASE("what answers a typed line starts below the prompt, and the prompt is drawn again") {
    ServerProcess server;
    make_lost_subscriber(server, "erin", "a");
    InteractiveClient client;
    REQUIRE(client.wait_for_output(kPrompt));
    // Piped input is not echoed: without a line break the answer would follow the prompt.
    client.write_stdin("CONNECT " + std::to_string(server.port()) + " erin\n");
    CHECK(client.wait_for_output(std::string{kPrompt} +
                                 "\nINFO: Connection restored\nINFO: Restored subscriptions: a\n" +
                                 std::string{kPrompt}));
}

TEST_CASE("the server going away is reported") {
    ServerProcess server;
    InteractiveClient client;
    CHECK(client.type("CONNECT " + std::to_string(server.port()) + " a",
                      "INFO: Connection successfully established"));
    server.send_signal(SIGTERM);
    CHECK(client.wait_for_output("ERROR: Server shut the connection, all subscriptions are lost"));
}

TEST_CASE("a killed client restores its subscriptions and missed messages") {
    ServerProcess server;
    const std::string port = std::to_string(server.port());
    {
        InteractiveClient first;
        CHECK(
            first.type("CONNECT " + port + " carol", "INFO: Connection successfully established"));
        first.type("SUBSCRIBE a", kPrompt);
        first.type("SUBSCRIBE b", kPrompt);
        REQUIRE(server.wait_for_output("Client 'carol' subscribed to 'b'"));
        first.send_signal(SIGKILL);
        first.wait_exit();
    }
    REQUIRE(server.wait_for_output("Client 'carol' lost"));
    TestClient publisher{server.port()};
    publisher.connect_as("pub");
    publisher.send_frame("PUBLISH a first");
    publisher.send_frame("PUBLISH b second one");
    publisher.barrier();
    InteractiveClient again;
    CHECK(again.type("connect " + port + " carol",
                     "INFO: Connection restored\nINFO: Restored subscriptions: a b\n"));
    CHECK(again.wait_for_output("Topic: a  Data: first\n"));
    CHECK(again.wait_for_output("Topic: b  Data: second one\n"));
    CHECK(again.type("SUBSCRIBE a", "INFO: Already subscribed to 'a'"));
}

TEST_CASE("a script of commands on stdin runs without prompts and exits") {
    ServerProcess server;
    TestClient sub{server.port()};
    sub.connect_as("sub");
    sub.send_frame("SUBSCRIBE t");
    sub.barrier();
    ChildProcess script{client_path(), {}, true};
    script.write_stdin("connect " + std::to_string(server.port()) +
                       " scripted\npublish t hi there\n");
    script.close_stdin();
    CHECK(script.wait_exit() == 0);
    CHECK(sub.read_frame() == "t hi there");
    CHECK(script.output().find(kPrompt) == std::string::npos);
    CHECK(script.output() == "INFO: Connection successfully established\nINFO: Disconnected\n");
}

TEST_CASE("pub -l of 1,000 lines arrives complete and in order at sub -C 1000") {
    ServerProcess server;
    const std::string port = std::to_string(server.port());
    ChildProcess sub{client_path(),
                     {"sub", "-p", port, "-n", "reader", "-t", "lines", "-C", "1000"}};
    REQUIRE(server.wait_for_output("Client 'reader' subscribed to 'lines'"));
    ChildProcess pub{client_path(), {"pub", "-p", port, "-t", "lines", "-l"}, true};
    std::string input;
    std::string expected;
    for (int i = 0; i < 1000; ++i) {
        input += "line " + std::to_string(i) + " with  spaces\n";
    }
    expected = input;
    pub.write_stdin(input);
    pub.close_stdin();
    CHECK(pub.wait_exit() == 0);
    CHECK(sub.wait_exit(10000ms) == 0);
    CHECK(sub.output() == expected);
}

TEST_CASE("pub -l to a broker that is slow to read delivers all, past --answer-timeout") {
    ServerProcess server;
    const std::string port = std::to_string(server.port());
    ChildProcess sub{client_path(),
                     {"sub", "-p", port, "-n", "patient", "-t", "lines", "-C", "200000"}};
    REQUIRE(server.wait_for_output("Client 'patient' subscribed to 'lines'"));
    ChildProcess pub{
        client_path(), {"pub", "-p", port, "-t", "lines", "-l", "--answer-timeout", "1"}, true};
    REQUIRE(server.wait_for_output("Client 'pub-"));
    // The log line comes before the answer to pub's CONNECT, and pub reads no input before it
    // has that answer: a round trip of another client proves the answer went out.
    TestClient other{server.port()};
    other.connect_as("other");
    other.barrier();
    server.send_signal(SIGSTOP);  // the broker reads nothing while the input arrives and ends
    std::string input;
    for (int i = 0; i < 200000; ++i) {
        input += "line " + std::to_string(i) + "\n";
    }
    pub.write_stdin(input);
    pub.close_stdin();
    std::this_thread::sleep_for(2000ms);  // longer than --answer-timeout
    server.send_signal(SIGCONT);
    CHECK(pub.wait_exit(30000ms) == 0);
    CHECK(sub.wait_exit(30000ms) == 0);
    CHECK(sub.output() == input);
}

TEST_CASE("sub -v prints the topic; pub -m publishes one message") {
    ServerProcess server;
    const std::string port = std::to_string(server.port());
    ChildProcess sub{client_path(),
                     {"sub", "-p", port, "-n", "s", "-t", "x", "-t", "y", "-C", "2", "-v"}};
    REQUIRE(server.wait_for_output("Client 's' subscribed to 'y'"));
    ChildProcess pub1{client_path(), {"pub", "-p", port, "-t", "x", "-m", "one"}};
    CHECK(pub1.wait_exit() == 0);
    ChildProcess pub2{client_path(), {"pub", "-H", "127.0.0.1", "-p", port, "-t", "y", "-m", ""}};
    CHECK(pub2.wait_exit() == 0);
    CHECK(sub.wait_exit() == 0);
    CHECK(sub.output() == "x one\ny \n");
}

TEST_CASE("pub: a refused PUBLISH exits 1 with the error on stderr; an accepted one exits 0") {
    ServerProcess server;
    const std::string port = std::to_string(server.port());
    TestClient reader{server.port()};
    reader.connect_as("reader");
    reader.send_frame("SUBSCRIBE a/#");
    reader.barrier();
    ClientStderr refused{{"pub", "-p", port, "-t", "a/+", "-m", "hi"}};
    CHECK(refused.wait_exit() == 1);
    CHECK(refused.output() == kWildcardPublish);
    // What did not change: a PUBLISH the server takes is delivered and pub exits 0, silent.
    ChildProcess accepted{client_path(), {"pub", "-p", port, "-t", "a/b", "-m", "hi"}};
    CHECK(accepted.wait_exit() == 0);
    CHECK(accepted.output().empty());
    CHECK(reader.read_frame() == "a/b hi");
}

TEST_CASE("pub -l prints each refusal as it comes and exits 1 at the end") {
    ServerProcess server;
    ClientStderr pub{{"pub", "-p", std::to_string(server.port()), "-t", "a/+", "-l"}, true};
    pub.write_stdin("one\n");
    CHECK(pub.wait_for_output(kWildcardPublish));  // before the input ends
    pub.write_stdin("two\n");
    pub.close_stdin();
    CHECK(pub.wait_exit() == 1);
    CHECK(pub.output() == std::string{kWildcardPublish} + std::string{kWildcardPublish});
}

TEST_CASE("pub stops waiting for the close after DISCONNECT after --answer-timeout") {
    // A server that accepts, takes the message and DISCONNECT, then never closes.
    SilentServer hung;
    ChildProcess pub{client_path(),
                     {"pub", "-p", std::to_string(hung.port()), "--answer-timeout", "0.3", "-t",
                      "t", "-m", "hi"}};
    REQUIRE(hung.accept_and_read("CONNECT "));
    hung.send_raw("OK: Conn accepted\n\nx");
    REQUIRE(hung.read_until("DISCONNECT\n\nx"));
    CHECK_FALSE(pub.wait_exit(100ms).has_value());
    CHECK(pub.wait_exit(2000ms) == 0);  // nothing was refused
    CHECK(pub.output().empty());
}

TEST_CASE("sub: a refused SUBSCRIBE exits 1 with the error on stderr instead of waiting") {
    ServerProcess server;
    ClientStderr sub{
        {"sub", "-p", std::to_string(server.port()), "-n", "s", "-t", "ok", "-t", "a/#/b"}};
    CHECK(sub.wait_exit() == 1);
    CHECK(sub.output() ==
          "ERROR: Wildcard '#' is allowed only as the last level of a SUBSCRIBE topic\n");
    CHECK(server.wait_for_output("Client 's' removed (disconnected)"));
}

TEST_CASE("a killed sub with a fixed name gets the missed messages when started again") {
    ServerProcess server;
    const std::string port = std::to_string(server.port());
    {
        ChildProcess sub{client_path(), {"sub", "-p", port, "-n", "durable", "-t", "t"}};
        REQUIRE(server.wait_for_output("Client 'durable' subscribed to 't'"));
        sub.send_signal(SIGKILL);
        sub.wait_exit();
    }
    REQUIRE(server.wait_for_output("Client 'durable' lost"));
    for (const char* message : {"m1", "m2", "m3"}) {
        ChildProcess pub{client_path(), {"pub", "-p", port, "-t", "t", "-m", message}};
        CHECK(pub.wait_exit() == 0);
    }
    ChildProcess again{client_path(), {"sub", "-p", port, "-n", "durable", "-t", "t", "-C", "3"}};
    CHECK(again.wait_exit() == 0);
    CHECK(again.output() == "m1\nm2\nm3\n");
}

TEST_CASE("one-liner errors: usage exits 2, connection problems exit 1") {
    const std::string client = client_path();
    for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
             {"pub", "-t", "t", "-m", "x"},      // no port
             {"pub", "-p", "12000", "-m", "x"},  // no topic
             {"pub", "-p", "12000", "-t", "t"},  // neither -m nor -l
             {"pub", "-p", "12000", "-t", "t", "-m", "x", "-l"},
             {"sub", "-p", "99999", "-t", "t"},
             {"sub", "-p", "12000", "-t", "t", "-n", "has space"},
             {"sub", "-p", "12000", "-t", "t", "-C", "0"},
             {"bogus"}}) {
        ChildProcess run{client, args};
        CAPTURE(args.front());
        CHECK(run.wait_exit() == 2);
    }
    std::uint16_t closed_port = 0;
    {
        ServerProcess gone;
        closed_port = gone.port();
    }
    ChildProcess refused{client, {"pub", "-p", std::to_string(closed_port), "-t", "t", "-m", "x"}};
    CHECK(refused.wait_exit() == 1);
    CHECK(refused.output().find("ERROR: Cannot connect to localhost:") != std::string::npos);

    ServerProcess server;
    TestClient holder{server.port()};
    holder.connect_as("held");
    ChildProcess taken{client,
                       {"sub", "-p", std::to_string(server.port()), "-n", "held", "-t", "t"}};
    CHECK(taken.wait_exit() == 1);
    CHECK(taken.output() == "ERROR: Name already taken\n");
}

TEST_CASE("a session started with a secret resumes only with it") {
    ServerProcess server;
    const std::string port = std::to_string(server.port());
    {
        InteractiveClient first;
        CHECK(first.type("CONNECT " + port + " dave s3cret",
                         "INFO: Connection successfully established"));
        first.type("SUBSCRIBE t", kPrompt);
        REQUIRE(server.wait_for_output("Client 'dave' subscribed to 't'"));
        first.send_signal(SIGKILL);
        first.wait_exit();
    }
    REQUIRE(server.wait_for_output("Client 'dave' lost"));
    ChildProcess pub{client_path(), {"pub", "-p", port, "-t", "t", "-m", "private"}};
    CHECK(pub.wait_exit() == 0);

    ChildProcess thief{client_path(), {"sub", "-p", port, "-n", "dave", "-t", "t"}};
    CHECK(thief.wait_exit() == 1);
    CHECK(thief.output() == "ERROR: Not authorized\n");
    ChildProcess guess{client_path(), {"sub", "-p", port, "-n", "dave", "-s", "guess", "-t", "t"}};
    CHECK(guess.wait_exit() == 1);

    // The owner connects from the thieves' address (all of them are on 127.0.0.1), so it waits
    // out the back-off their two failures started (0.2 s) before its secret is checked.
    std::this_thread::sleep_for(300ms);
    InteractiveClient owner{{"--secret", "s3cret"}};
    CHECK(owner.type("CONNECT " + port + " dave",
                     "INFO: Connection restored\nINFO: Restored subscriptions: t\n"));
    CHECK(owner.wait_for_output("Topic: t  Data: private\n"));
}
