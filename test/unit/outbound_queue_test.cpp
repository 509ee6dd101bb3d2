#include "pubsubx/outbound_queue.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <string>

#include "pubsubx/protocol.hpp"

using namespace pubsubx;

namespace {
std::string frame(std::string_view text) {
    std::string out;
    append_frame(out, text);
    return out;
}
}  // namespace

TEST_CASE("the queue keeps frames in order and hands them out at once") {
    const std::size_t bound = 1024;
    OutboundQueue queue;
    CHECK(queue.push(frame("one"), bound) == 0);
    CHECK(queue.push(frame("two"), bound) == 0);
    CHECK(queue.message_count() == 2);
    std::string out = "stale";
    queue.take_all(out);
    CHECK(out == frame("one") + frame("two"));
    CHECK(queue.empty());
}

TEST_CASE("a full queue drops its oldest frames") {
    const std::string one = frame("1111");  // 7 bytes each
    const std::size_t bound = 3 * one.size();
    OutboundQueue queue;
    CHECK(queue.push(frame("1111"), bound) == 0);
    CHECK(queue.push(frame("2222"), bound) == 0);
    CHECK(queue.push(frame("3333"), bound) == 0);
    CHECK(queue.push(frame("4444"), bound) == 1);
    CHECK(queue.push(frame("55555555"), bound) == 2);  // needs room for 11 bytes
    std::string out;
    queue.take_all(out);
    CHECK(out == frame("4444") + frame("55555555"));
}

TEST_CASE("a frame larger than the whole bound is dropped itself") {
    const std::size_t bound = 8;
    OutboundQueue queue;
    CHECK(queue.push(frame("ok"), bound) == 0);
    CHECK(queue.push(frame("far too long"), bound) == 1);
    CHECK(queue.size() == frame("ok").size());
}

TEST_CASE("control frames go before the backlog whatever the bound, and are never dropped") {
    const std::size_t bound = 10;
    OutboundQueue queue;
    queue.push(frame("m1"), bound);
    queue.push(frame("m2"), bound);
    queue.push(frame("m3"), bound);  // drops m1
    queue.push_control(frame("RESTORED a") + frame("t"));
    CHECK(queue.push(frame("m4"), bound) == 1);  // drops m2, never the control frames
    CHECK(queue.message_count() == 2);
    std::string out;
    CHECK(queue.take_all(out) == (frame("RESTORED a") + frame("t")).size());
    CHECK(out == frame("RESTORED a") + frame("t") + frame("m3") + frame("m4"));
    CHECK(queue.empty());
}

TEST_CASE("drop_oldest frees whole messages until enough bytes are free") {
    OutboundQueue queue;
    for (const char* text : {"aaaa", "bbbb", "cccc"}) {
        queue.push(frame(text), 1024);
    }
    const OutboundQueue::Dropped dropped = queue.drop_oldest(8);  // two frames of 7 bytes
    CHECK(dropped.messages == 2);
    CHECK(dropped.bytes == 14);
    std::string out;
    queue.take_all(out);
    CHECK(out == frame("cccc"));
}

TEST_CASE("memory held stays within four times the queued bytes plus two frames and a little") {
    // Under a tight bound every push drops: dead bytes at the front must not pile up (a lost
    // client under the global cap holds a few hundred bytes, and thousands of them exist).
    for (const std::size_t bound : {300U, 4096U, 100'000U}) {
        OutboundQueue queue;
        std::size_t worst_excess = 0;
        for (int i = 0; i < 200'000; ++i) {
            const std::string message =
                frame("message " + std::to_string(i) + std::string(i % 50, 'x'));
            queue.push(message, bound);
            const std::size_t allowed =
                4 * queue.size() + 2 * message.size() + OutboundQueue::kSpareCapacity + 64;
            if (queue.memory_held() > allowed) {
                worst_excess = std::max(worst_excess, queue.memory_held() - allowed);
            }
        }
        CHECK(worst_excess == 0);
    }
}

TEST_CASE("dropping many frames compacts the buffer and keeps the newest") {
    const std::size_t bound = 100 * 1024;
    OutboundQueue queue;
    std::string last;
    for (int i = 0; i < 100000; ++i) {
        last = frame("message " + std::to_string(i));
        queue.push(last, bound);
    }
    CHECK(queue.size() <= 100 * 1024);
    std::string out;
    queue.take_all(out);
    CHECK(out.ends_with(last));
    CHECK(out.starts_with("message "));
}

// Issue 16: large frames are queued as references to one shared buffer, placed among the
// inline bytes; what comes out is byte for byte what copies would have given.
namespace {
SharedFrame shared_frame(std::string_view text) {
    return std::make_shared<const std::string>(frame(text));
}

// What a gathered write sends: the inline bytes with the shared frames placed among them.
std::string flattened(const std::string& bytes, const SharedFrames& shared) {
    std::string out;
    shared.append_flattened(out, bytes);
    return out;
}
}  // namespace

TEST_CASE("shared and inline frames come out in the order they were queued") {
    const SharedFrame big = shared_frame(std::string(5000, 'B'));
    OutboundQueue queue;
    queue.push(frame("a"), 1 << 20);
    queue.push_shared(big, 1 << 20);
    queue.push_shared(big, 1 << 20);  // the same buffer twice: two messages
    queue.push(frame("b"), 1 << 20);
    queue.push_shared(big, 1 << 20);
    CHECK(big.use_count() == 4);
    CHECK(queue.message_count() == 5);
    CHECK(queue.message_bytes() == 2 * frame("a").size() + 3 * big->size());
    CHECK(queue.shared_count() == 3);
    std::string out;
    SharedFrames shared;
    CHECK(queue.take_up_to(out, shared, 1 << 20) == 0);
    CHECK(out == frame("a") + frame("b"));  // only the small ones were copied
    CHECK(shared.count() == 3);
    CHECK(shared.bytes == 3 * big->size());
    CHECK(flattened(out, shared) == frame("a") + *big + *big + frame("b") + *big);
    CHECK(queue.empty());
    CHECK(queue.memory_held() == 0);  // nothing kept for an idle client
    shared.clear();
    CHECK(big.use_count() == 1);
}

TEST_CASE("control frames go before shared frames that start the queue") {
    const SharedFrame big = shared_frame(std::string(5000, 'B'));
    OutboundQueue queue;
    queue.push_shared(big, 1 << 20);
    queue.push(frame("small"), 1 << 20);
    queue.push_control(frame("RESTORED x"));
    std::string out;
    SharedFrames shared;
    CHECK(queue.take_all(out, shared) == frame("RESTORED x").size());
    CHECK(flattened(out, shared) == frame("RESTORED x") + *big + frame("small"));
}

TEST_CASE("dropping the oldest crosses inline and shared frames alike") {
    const SharedFrame big = shared_frame(std::string(100, 'B'));  // 103 bytes
    const std::string small = frame("ssss");                      // 7 bytes
    const std::size_t bound = 2 * big->size() + 2 * small.size();
    OutboundQueue queue;
    CHECK(queue.push(small, bound) == 0);
    CHECK(queue.push_shared(big, bound) == 0);
    CHECK(queue.push(frame("tttt"), bound) == 0);
    CHECK(queue.push_shared(big, bound) == 0);
    // Needs 103 bytes: drops "ssss" (7), then the first shared frame (103).
    CHECK(queue.push_shared(big, bound) == 2);
    CHECK(big.use_count() == 3);  // the dropped one's reference is gone
    // "tttt", two shared frames and "uuuu" make exactly the bound.
    CHECK(queue.push(frame("uuuu"), bound) == 0);
    CHECK(queue.push(frame("vvvv"), bound) == 1);  // drops "tttt"
    const OutboundQueue::Dropped dropped = queue.drop_oldest(1);
    CHECK(dropped.messages == 1);
    CHECK(dropped.bytes == big->size());
    std::string out;
    queue.take_all(out);  // flattened for a caller that wants one string
    CHECK(out == *big + frame("uuuu") + frame("vvvv"));
    CHECK(big.use_count() == 1);
}

TEST_CASE("a shared frame larger than the whole bound is dropped itself") {
    const SharedFrame big = shared_frame(std::string(100, 'B'));
    OutboundQueue queue;
    queue.push(frame("ok"), 50);
    CHECK(queue.push_shared(big, 50) == 1);
    CHECK(queue.size() == frame("ok").size());
    CHECK(big.use_count() == 1);
}

TEST_CASE("take_up_to takes whole messages of both kinds up to the limit, at least one") {
    const SharedFrame big = shared_frame(std::string(100, 'B'));  // 103 bytes
    OutboundQueue queue;
    queue.push_control(frame("ctl"));
    queue.push(frame("aaaa"), 1 << 20);  // 7
    queue.push_shared(big, 1 << 20);
    queue.push(frame("bbbb"), 1 << 20);
    queue.push_shared(big, 1 << 20);
    queue.push_shared(big, 1 << 20);
    std::string out;
    SharedFrames shared;
    // 7 + 103 fit in 120; "bbbb" would make 117: fits too; the next shared frame does not.
    CHECK(queue.take_up_to(out, shared, 120) == frame("ctl").size());
    CHECK(flattened(out, shared) == frame("ctl") + frame("aaaa") + *big + frame("bbbb"));
    // A limit smaller than the first message still takes that one.
    CHECK(queue.take_up_to(out, shared, 10) == 0);
    CHECK(flattened(out, shared) == *big);
    CHECK(queue.message_count() == 1);
    CHECK(queue.take_up_to(out, shared, 10) == 0);
    CHECK(flattened(out, shared) == *big);
    CHECK(queue.empty());
}

TEST_CASE("unsent frames go back in front of shared frames, flattened") {
    const SharedFrame big = shared_frame(std::string(100, 'B'));
    OutboundQueue queue;
    queue.push_shared(big, 1 << 20);
    queue.push(frame("later"), 1 << 20);
    queue.push_shared(big, 1 << 20);
    const std::string unsent = frame("first") + *big;
    queue.return_unsent(unsent);
    CHECK(queue.shared_count() == 0);
    CHECK(queue.messages() == unsent + *big + frame("later") + *big);
    CHECK(queue.message_bytes() == unsent.size() + 2 * big->size() + frame("later").size());
    CHECK(big.use_count() == 1);
}

TEST_CASE("flattening copies shared frames into the buffer and keeps every byte and count") {
    const SharedFrame big = shared_frame(std::string(100, 'B'));
    OutboundQueue queue;
    queue.push(frame("x"), 1 << 20);
    queue.push(frame("y"), 1 << 20);
    queue.drop_oldest(1);  // a dropped prefix before the shared frames
    queue.push_shared(big, 1 << 20);
    queue.push(frame("z"), 1 << 20);
    queue.push_shared(big, 1 << 20);
    const std::size_t bytes = queue.message_bytes();
    const std::size_t count = queue.message_count();
    queue.flatten();
    CHECK(queue.shared_count() == 0);
    CHECK(big.use_count() == 1);
    CHECK(queue.message_bytes() == bytes);
    CHECK(queue.message_count() == count);
    CHECK(queue.messages() == frame("y") + *big + frame("z") + *big);
}

TEST_CASE("memory held counts shared frames whole and goes back to nothing when taken") {
    const SharedFrame big = shared_frame(std::string(5000, 'B'));
    OutboundQueue queue;
    CHECK(queue.memory_held() == 0);
    queue.push_shared(big, 1 << 20);
    CHECK(queue.memory_held() >= big->size());
    queue.push_shared(big, 1 << 20);
    CHECK(queue.memory_held() >= 2 * big->size());
    std::string out;
    SharedFrames shared;
    queue.take_all(out, shared);
    CHECK(queue.memory_held() == 0);
    queue.push_shared(big, 1 << 20);
    queue.clear();
    CHECK(queue.memory_held() == 0);
    CHECK(big.use_count() == 3);  // `shared` still holds the write's two
}

// Found in review: a queue that stays behind but never empties or drops (a reader that keeps
// pace after a burst) kept an entry for every shared frame ever taken.
TEST_CASE("a queue that never empties keeps no entries for the shared frames it gave out") {
    const SharedFrame big = shared_frame(std::string(3000, 'B'));
    OutboundQueue queue;
    for (int i = 0; i < 20; ++i) {
        queue.push_shared(big, 1 << 20);
    }
    std::string out;
    SharedFrames shared;
    for (int round = 0; round < 5000; ++round) {
        for (int i = 0; i < 10; ++i) {
            queue.push_shared(big, 1 << 20);
        }
        queue.take_up_to(out, shared, 10 * big->size());
        REQUIRE(shared.count() == 10);
    }
    CHECK(queue.message_count() == 20);
    CHECK(queue.message_bytes() == 20 * big->size());
    CHECK(queue.memory_held() < 2 * queue.message_bytes() + 64 * 1024);
}

// Found in the second review: after a burst, the list of shared frames kept its capacity
// while the queue, never empty, kept pace one frame at a time.
TEST_CASE("after a burst, a queue that never empties gives back the room its entries took") {
    const SharedFrame big = shared_frame(std::string(2000, 'B'));
    OutboundQueue queue;
    for (int i = 0; i < 20'000; ++i) {
        queue.push_shared(big, 1 << 30);
    }
    std::string out;
    SharedFrames shared;
    while (queue.message_count() > 3) {
        queue.take_up_to(out, shared, big->size());
    }
    for (int i = 0; i < 20'000; ++i) {
        queue.push_shared(big, 1 << 30);
        queue.take_up_to(out, shared, big->size());
    }
    CHECK(queue.message_count() == 3);
    CHECK(queue.memory_held() < 2 * queue.message_bytes() + 64 * 1024);
}

TEST_CASE("a long run of drops over mixed frames keeps the newest, in order") {
    const std::size_t bound = 4096;
    OutboundQueue queue;
    std::vector<std::string> expected;  // every message pushed, in order
    std::size_t dropped = 0;
    for (int i = 0; i < 20'000; ++i) {
        const std::string text =
            std::to_string(i) + std::string(static_cast<std::size_t>(i % 7) * 60, 'x');
        if (i % 3 == 0) {
            const SharedFrame shared = shared_frame(text);
            dropped += queue.push_shared(shared, bound);
            expected.push_back(*shared);
        } else {
            dropped += queue.push(frame(text), bound);
            expected.push_back(frame(text));
        }
        CHECK(queue.message_bytes() <= bound);
    }
    std::string out;
    SharedFrames shared;
    queue.take_all(out, shared);
    std::string tail;
    for (std::size_t i = dropped; i < expected.size(); ++i) {
        tail += expected[i];
    }
    CHECK(flattened(out, shared) == tail);
}
