#include "pubsubx/outbound_queue.hpp"

#include <doctest/doctest.h>

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
    CHECK(queue.frame_count() == 2);
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

TEST_CASE("control frames go before the backlog whatever the bound") {
    const std::size_t bound = 10;
    OutboundQueue queue;
    queue.push(frame("m1"), bound);
    queue.push(frame("m2"), bound);
    queue.push(frame("m3"), bound);  // drops m1
    queue.push_front_unbounded(frame("RESTORED a") + frame("t"));
    std::string out;
    queue.take_all(out);
    CHECK(out == frame("RESTORED a") + frame("t") + frame("m2") + frame("m3"));
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
