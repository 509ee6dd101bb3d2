// The lost-client lifecycle and the defects the outside review of issue 9 found, against the
// real server over loopback TCP. Each case failed on the server before that fix.
#include <dirent.h>
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

using namespace pubsubx::testing;

namespace {

std::size_t open_descriptors(pid_t pid) {
    std::size_t count = 0;
    DIR* const directory = opendir(("/proc/" + std::to_string(pid) + "/fd").c_str());
    REQUIRE(directory != nullptr);
    while (readdir(directory) != nullptr) {
        ++count;
    }
    closedir(directory);
    return count - 2;  // . and ..
}

std::size_t count_of(const std::string& text, const std::string& needle) {
    std::size_t count = 0;
    for (std::size_t at = text.find(needle); at != std::string::npos;
         at = text.find(needle, at + 1)) {
        ++count;
    }
    return count;
}

}  // namespace

TEST_CASE("an earlier loss of the same name does not expire a later client early") {
    ServerProcess server{{"--lost-timeout", "2"}};
    make_lost_subscriber(server, "x", "t");  // its deadline: now + 2 s
    const auto first_loss = std::chrono::steady_clock::now();
    {
        TestClient back{server.port()};
        back.send_frame("CONNECT x");
        CHECK(back.read_frame() == "RESTORED x");
        back.send_frame("DISCONNECT");
        CHECK(back.wait_closed());
    }
    std::this_thread::sleep_until(first_loss + 1s);
    make_lost_subscriber(server, "x", "u");  // a new client x, lost 1 s later: kept until +3 s
    std::this_thread::sleep_until(first_loss + 2500ms);
    TestClient again{server.port()};
    again.send_frame("CONNECT x");
    CHECK(again.read_frame() == "RESTORED x");
    CHECK(again.read_frame() == "u");
}

TEST_CASE("a slow consumer that was cut off expires after --lost-timeout") {
    ServerProcess server{{"--max-queue", "400000", "--slow-consumer-grace", "0.2", "--lost-timeout",
                          "0.5", "--write-timeout", "0"}};
    TestClient slow{server.port(), 4096};
    slow.connect_as("slow");
    slow.send_frame("SUBSCRIBE t");
    slow.barrier();
    TestClient pub{server.port()};
    pub.connect_as("pub");
    REQUIRE(publish_until_logged(server, pub, "ERROR: Client 'slow' cut off"));
    // Nothing else is lost in this test: only the cut-off itself can arm the expiry.
    CHECK(server.wait_for_output("Client 'slow' removed (retention period of 0.5 s ended", 3s));
}

TEST_CASE("a reader slower than the publishers is cut off after the grace, with one log pair") {
    ServerProcess server{
        {"--max-queue", "400000", "--slow-consumer-grace", "0.5", "--write-timeout", "0"}};
    TestClient slow{server.port(), 4096};
    slow.connect_as("slow");
    slow.send_frame("SUBSCRIBE t");
    slow.barrier();
    TestClient pub{server.port()};
    pub.connect_as("pub");
    // First the socket buffers and the queue fill up...
    REQUIRE(publish_until_logged(server, pub, "Queue of client 'slow' is full"));
    // ...then the reader keeps taking a little, so writes keep completing and starting, but
    // the publisher is faster: it never catches up, and the episode that began goes on.
    const std::size_t mark = server.output().size();
    const auto until = std::chrono::steady_clock::now() + 4s;
    bool cut = false;
    while (!cut && std::chrono::steady_clock::now() < until) {
        publish_bulk(pub, 20, 1000);
        slow.read_slowly(4000, 5ms);
        cut = server.output().find("ERROR: Client 'slow' cut off") != std::string::npos;
    }
    CHECK(cut);
    const std::string since_full = server.output().substr(mark);
    CHECK(count_of(since_full, "Queue of client 'slow' is full") == 0);
    CHECK(count_of(since_full, "Client 'slow' caught up") == 0);
}

TEST_CASE("a slow but steady reader of a large backlog is not taken for a stalled one") {
    ServerProcess server{
        {"--max-queue", "32000000", "--write-timeout", "1.5", "--slow-consumer-grace", "0"}};
    TestClient reader{server.port(), 65536};
    reader.connect_as("reader");
    reader.send_frame("SUBSCRIBE t");
    reader.barrier();
    TestClient pub{server.port()};
    pub.connect_as("pub");
    publish_bulk(pub, 16'000, 1000);  // 16 MB: one write of it takes seconds at this pace
    pub.barrier();
    // A few MB/s: the write in flight makes progress every fraction of a second (the kernel
    // wakes a writer once a third of its send buffer is free), never 1.5 s apart.
    std::size_t read = 0;
    const auto until = std::chrono::steady_clock::now() + 2500ms;
    while (std::chrono::steady_clock::now() < until) {
        read += reader.read_slowly(16384, 100ms);
        std::this_thread::sleep_for(4ms);
    }
    CHECK(read > 1'000'000);
    CHECK(server.output().find("stopped reading") == std::string::npos);
    CHECK(server.output().find("Client 'reader' lost") == std::string::npos);
}

TEST_CASE("a CONNECT during the back-off is refused unchecked, whichever secret it carries") {
    ServerProcess server;
    TestClient owner{server.port(), 0, "127.0.0.1"};
    owner.send_frame("CONNECT owner k3y");
    CHECK(owner.read_frame() == "OK: Conn accepted");
    owner.drop();
    wait_lost(server, "owner");
    for (int i = 0; i < 5; ++i) {  // a guesser on 127.0.0.2 fails, then tries the right secret
        TestClient guess{server.port(), 0, "127.0.0.2"};
        guess.send_frame("CONNECT owner wrong" + std::to_string(i));
        CHECK(guess.read_frame()->starts_with("ERROR: Not authorized"));
    }
    TestClient right{server.port(), 0, "127.0.0.2"};
    right.send_frame("CONNECT owner k3y");
    const auto answer = right.read_frame();
    REQUIRE(answer.has_value());
    CHECK(answer->starts_with("ERROR: Not authorized: too many failed attempts, retry in"));
    CHECK(right.wait_closed());
    // Meanwhile the owner, from where it last connected, is checked at once.
    TestClient back{server.port(), 0, "127.0.0.1"};
    back.send_frame("CONNECT owner k3y");
    CHECK(back.read_frame() == "RESTORED owner");
}

TEST_CASE("refused secrets hold no descriptor once the peer reset its connection") {
    ServerProcess server;
    TestClient owner{server.port()};
    owner.send_frame("CONNECT owner k3y");
    CHECK(owner.read_frame() == "OK: Conn accepted");
    owner.drop();
    wait_lost(server, "owner");
    const std::size_t before = open_descriptors(server.pid());
    for (int i = 0; i < 200; ++i) {
        TestClient guess{server.port(), 0, "127.0.0.2"};
        guess.send_frame("CONNECT owner wrong");
        guess.drop(true);
    }
    TestClient probe{server.port()};
    probe.connect_as("probe");
    probe.barrier();  // every guess before the probe was handled
    std::this_thread::sleep_for(100ms);
    CHECK(open_descriptors(server.pid()) <= before + 5);
}

TEST_CASE("control frames get through when the global cap is full") {
    ServerProcess server{{"--max-queue", "0", "--max-total-queue", "20000", "--max-topic-length",
                          "40", "--write-timeout", "0", "--slow-consumer-grace", "0"}};
    make_lost_subscriber(server, "gone", "g");
    TestClient hog{server.port(), 4096};  // connected, never reads: fills the cap
    hog.connect_as("hog");
    hog.send_frame("SUBSCRIBE t");
    hog.barrier();
    TestClient pub{server.port()};
    pub.connect_as("pub");
    publish_bulk(pub, 400, 995);  // 1000-byte frames: they fill the cap to the byte
    REQUIRE(server.wait_for_output("reached the global cap"));
    TestClient late{server.port()};
    late.send_frame("CONNECT late");
    CHECK(late.read_frame() == "OK: Conn accepted");
    late.send_frame("SUBSCRIBE " + std::string(41, 'l'));
    CHECK(late.read_frame() == "ERROR: Topic too long (the limit is 40 bytes)");
    TestClient back{server.port()};
    back.send_frame("CONNECT gone");
    CHECK(back.read_frame() == "RESTORED gone");
    CHECK(back.read_frame() == "g");
}

TEST_CASE("before CONNECT a connection may send only what a CONNECT can be") {
    ServerProcess server;
    TestClient pending{server.port()};
    pending.send_raw(std::string(300, 'C'));  // no delimiter: an unfinished frame
    CHECK(pending.read_frame() == "ERROR: Frame too long (the limit is 256 bytes before CONNECT)");
    CHECK(pending.wait_closed());
    TestClient valid{server.port()};
    valid.send_frame("CONNECT " + std::string(64, 'n') + " " + std::string(128, 's'));
    CHECK(valid.read_frame() == "OK: Conn accepted");
    valid.send_frame("PUBLISH t " + std::string(10'000, 'd'));  // after CONNECT: --max-frame
    valid.barrier();
}

TEST_CASE("a peer still sending when its connection is closed reads the error frame") {
    ServerProcess server{{"--max-frame", "1000"}};
    TestClient c{server.port()};
    c.connect_as("c");
    std::atomic<bool> sent{false};
    std::thread sender{[&] {
        std::string bytes(300'000, 'x');  // one frame far over the limit, still being sent
        c.send_raw(bytes);
        sent = true;
    }};
    const auto error = c.read_frame(3s);
    sender.join();
    CHECK(sent);
    CHECK(error == "ERROR: Frame too long (the limit is 1000 bytes)");
    CHECK(c.wait_closed());
}

TEST_CASE("a client with a long topic list is restored; frames after its CONNECT act for it") {
    ServerProcess server;
    {
        TestClient sub{server.port()};
        std::string subscribe_many;
        for (int i = 0; i < 70; ++i) {  // a RESTORED reply of over 64 KiB
            subscribe_many += "SUBSCRIBE " + std::string(1000, 'x') + std::to_string(i) + "\n\nx";
        }
        sub.send_frame("CONNECT sub");
        sub.send_raw(subscribe_many);
        CHECK(sub.read_frame() == "OK: Conn accepted");
        sub.barrier();
        sub.drop();
    }
    wait_lost(server, "sub");
    // One segment: the restore, then frames that must act for the restored client.
    TestClient back{server.port()};
    back.send_raw("CONNECT sub\n\nxCONNECT evil s3cret\n\nxSUBSCRIBE t\n\nx");
    CHECK(back.read_frame() == "RESTORED sub");
    const auto topics = back.read_frame();
    REQUIRE(topics.has_value());
    CHECK(topics->size() > 64 * 1024);
    back.barrier();
    CHECK(server.output().find("Client 'evil' added") == std::string::npos);
    CHECK(server.output().find("cut off") == std::string::npos);
    TestClient evil{server.port()};
    evil.send_frame("CONNECT evil s3cret");  // a fresh name, nothing left behind
    CHECK(evil.read_frame() == "OK: Conn accepted");
}
