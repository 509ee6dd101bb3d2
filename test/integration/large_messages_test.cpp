// Issue 16: large messages are shared by their subscribers' queues and gathered into each
// write instead of copied. Over real TCP, every subscriber must see exactly the stream it saw
// before: the same bytes in the same order, the same drops under --max-queue, the same
// restored queue after an abrupt end, with and without the durable store.
#include <doctest/doctest.h>

#include <csignal>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "support.hpp"

using namespace pubsubx::testing;
namespace fs = std::filesystem;

namespace {

// Message i of a test: 64 KiB, 5 KiB (both shared with two subscribers or more: above the broker's
// threshold) or a few bytes (copied), in turn, each with its number first and its own filler, so
// that a message out of place or cut anywhere shows.
std::string payload(int i) {
    static constexpr std::size_t kSizes[] = {64 * 1024, 5 * 1024, 0};
    std::string data = "m" + std::to_string(i) + " ";
    data.append(kSizes[i % 3], static_cast<char>('a' + i % 26));
    return data;
}

std::string delivered(int i) {
    return "t " + payload(i);
}

// The number of a delivered frame "t m<i> ...".
int number_of(const std::string& frame) {
    return frame.starts_with("t m") ? std::stoi(frame.substr(3)) : -1;
}

void publish_range(TestClient& publisher, int from, int to) {
    std::string bytes;
    for (int i = from; i < to; ++i) {
        pubsubx::append_frame(bytes, "PUBLISH t " + payload(i));
    }
    publisher.send_raw(bytes);
    publisher.barrier();
}

// The figure in the server's "... <before><N><after>" line, -1 if not logged within 5 s.
long logged_number(ServerProcess& server, const std::string& before, std::size_t from = 0) {
    if (!server.wait_for_output(before, 5000ms, from)) {
        return -1;
    }
    const std::string& output = server.output();
    const std::size_t at = output.find(before, from) + before.size();
    return std::stol(output.substr(at));
}

// Reads frames until none comes for `quiet`.
std::vector<std::string> read_all(TestClient& client, Millis quiet) {
    std::vector<std::string> frames;
    while (auto frame = client.read_frame(quiet)) {
        frames.push_back(std::move(*frame));
    }
    return frames;
}

// Frames "t m<i>..." that must be messages first..last, each whole.
void check_run(const std::vector<std::string>& frames, std::size_t from, int first, int last) {
    REQUIRE(frames.size() - from == static_cast<std::size_t>(last - first + 1));
    for (int i = first; i <= last; ++i) {
        const std::string& frame = frames[from + static_cast<std::size_t>(i - first)];
        INFO("message ", i);
        CHECK(number_of(frame) == i);
        CHECK(frame == delivered(i));  // CHECK: a mismatch should not print 64 KiB twice
    }
}

// A subscriber that never reads (a 4 KiB receive buffer), so that its queue holds shared
// frames when it goes.
std::unique_ptr<TestClient> stalled_subscriber(ServerProcess& server, const std::string& name) {
    auto client = std::make_unique<TestClient>(server.port(), 4096);
    client->connect_as(name);
    client->send_frame("SUBSCRIBE t");
    client->barrier();
    return client;
}

// The client reconnects: RESTORED, its topic, then exactly `count` messages, the newest
// ending with message `last`.
void check_restored(ServerProcess& server, const std::string& name, long count, int last) {
    TestClient back{server.port()};
    back.send_frame("CONNECT " + name);
    CHECK(back.read_frame() == "RESTORED " + name);
    CHECK(back.read_frame() == "t");
    back.barrier();
    std::vector<std::string> frames;
    while (back.frames_waiting() > 0) {
        frames.push_back(*back.read_frame());
    }
    REQUIRE(count > 0);
    check_run(frames, 0, last - static_cast<int>(count) + 1, last);
}

}  // namespace

TEST_CASE("24 subscribers each get every large, medium and small message, byte for byte") {
    ServerProcess server{{"--max-queue", "0"}};
    std::vector<std::unique_ptr<TestClient>> subscribers;
    for (int s = 0; s < 24; ++s) {
        subscribers.push_back(std::make_unique<TestClient>(server.port()));
        subscribers.back()->connect_as("sub" + std::to_string(s));
        subscribers.back()->send_frame("SUBSCRIBE t");
        subscribers.back()->barrier();
    }
    TestClient publisher{server.port()};
    publisher.connect_as("pub");
    constexpr int kMessages = 60;  // 20 of each size: 1.4 MB per subscriber
    publish_range(publisher, 0, kMessages);
    for (auto& subscriber : subscribers) {
        std::vector<std::string> frames;
        for (int i = 0; i < kMessages; ++i) {
            frames.push_back(subscriber->read_frame(10000ms).value_or("(nothing)"));
        }
        check_run(frames, 0, 0, kMessages - 1);
    }
    // The control frames keep their place too: an error goes out after what came before it.
    publisher.send_frame("PUBLISH t/+ x");
    CHECK(publisher.read_frame().value_or("").starts_with("ERROR"));
}

TEST_CASE("a subscriber that stops reading keeps the newest messages, and the drops add up") {
    ServerProcess server{
        {"--max-queue", "400000", "--slow-consumer-grace", "0", "--write-timeout", "0"}};
    auto reader = stalled_subscriber(server, "reader");
    // A second subscriber, so that the large frames are shared (one subscriber gets copies).
    auto other = stalled_subscriber(server, "other");
    TestClient publisher{server.port()};
    publisher.connect_as("pub");
    constexpr int kMessages = 300;  // 7 MB, far beyond the bound and the socket buffers
    for (int from = 0; from < kMessages; from += 30) {
        publish_range(publisher, from, from + 30);
    }
    CHECK(server.wait_for_output("ERROR: Queue of client 'reader' is full"));
    const std::vector<std::string> frames = read_all(*reader, 1000ms);
    INFO("received ", frames.size(), " messages");
    REQUIRE(frames.size() > 1);
    // Whatever arrived is whole, in order, and ends with the newest; something was dropped
    // (between writes: each write takes at most half the bound, and the kernel takes some).
    bool gap = false;
    for (std::size_t k = 0; k < frames.size(); ++k) {
        REQUIRE(frames[k] == delivered(number_of(frames[k])));
        if (k > 0) {
            REQUIRE(number_of(frames[k]) > number_of(frames[k - 1]));
            gap = gap || number_of(frames[k]) != number_of(frames[k - 1]) + 1;
        }
    }
    CHECK(gap);
    CHECK(number_of(frames.back()) == kMessages - 1);
    CHECK(number_of(frames.front()) == 0);
    // "Client 'reader' caught up after ...; N message(s) were dropped while its queue was full"
    const std::string caught_up = "Client 'reader' caught up after ";
    REQUIRE(server.wait_for_output(caught_up));
    const std::size_t line = server.output().find(caught_up);
    const long logged = logged_number(server, "; ", line);
    CHECK(static_cast<long>(frames.size()) + logged == kMessages);
}

// 120 messages make 8.5 MB: the kernel's buffers take a few MB of the first writes, the rest
// stays queued.
constexpr int kStallingMessages = 120;

TEST_CASE("a subscriber that drops while holding shared frames gets them all back") {
    ServerProcess server{{"--max-queue", "64000000", "--write-timeout", "0"}};
    auto sub = stalled_subscriber(server, "sub");
    auto other = stalled_subscriber(server, "other");  // the frames are shared, as above
    TestClient publisher{server.port()};
    publisher.connect_as("pub");
    // The first batch fills the kernel's buffers; the second arrives while a write is stuck.
    constexpr int kMessages = kStallingMessages + 30;
    publish_range(publisher, 0, kStallingMessages);
    publish_range(publisher, kStallingMessages, kMessages);
    const std::size_t mark = server.output().size();
    sub->drop(true);
    const long kept =
        logged_number(server, "Client 'sub' lost; keeping its 1 subscription(s) and ", mark);
    INFO("kept ", kept);
    CHECK(kept >= 30);  // the write in flight dies with the connection, the queue is kept
    // Messages published while it is lost are queued for it as copies, after the others.
    publish_range(publisher, kMessages, kMessages + 6);
    check_restored(server, "sub", kept + 6, kMessages + 5);
}

TEST_CASE("with --data-dir, lost and connected clients keep their shared frames across a restart") {
    TemporaryDirectory dir{"large-messages"};
    const std::vector<std::string> options{"--data-dir",
                                           (fs::path{dir.path()} / "data").string(),
                                           "--write-timeout",
                                           "0",
                                           "--slow-consumer-grace",
                                           "0",
                                           "--max-queue",
                                           "64000000"};
    constexpr int kMessages = kStallingMessages + 30;
    constexpr int kLast = kMessages + 29;
    long kept = 0;
    {
        ServerProcess server{options};
        auto lost = stalled_subscriber(server, "lost");
        auto slow = stalled_subscriber(server, "slow");  // still connected at the stop
        TestClient publisher{server.port()};
        publisher.connect_as("pub");
        publish_range(publisher, 0, kStallingMessages);
        publish_range(publisher, kStallingMessages, kMessages);
        const std::size_t mark = server.output().size();
        lost->drop(true);
        kept =
            logged_number(server, "Client 'lost' lost; keeping its 1 subscription(s) and ", mark);
        CHECK(kept >= 30);
        // Copies queued while it is lost, after its shared frames (flattened when it was lost).
        publish_range(publisher, kMessages, kLast + 1);
        server.send_signal(SIGTERM);
        REQUIRE(server.wait_exit(10000ms) == 0);
    }
    ServerProcess server{options};
    check_restored(server, "lost", kept + 30, kLast);
    // The connected one's write in flight at the stop went back to its queue: it comes back
    // with a newest part of its messages, whole and in order, ending with the last.
    TestClient back{server.port()};
    back.send_frame("CONNECT slow");
    CHECK(back.read_frame() == "RESTORED slow");
    CHECK(back.read_frame() == "t");
    back.barrier();
    std::vector<std::string> frames;
    while (back.frames_waiting() > 0) {
        frames.push_back(*back.read_frame());
    }
    REQUIRE(!frames.empty());
    check_run(frames, 0, number_of(frames.front()), kLast);
}
