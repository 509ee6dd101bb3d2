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
