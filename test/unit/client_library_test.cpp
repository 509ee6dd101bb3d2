// The client library's pure parts: the reconnection back-off, the reading of the server's
// replies and the classification of its ERROR: frames.
#include <doctest/doctest.h>

#include "backoff.hpp"
#include "pubsubx/client.hpp"
#include "pubsubx/protocol.hpp"
#include "server_replies.hpp"

using namespace pubsubx;
using namespace pubsubx::client;
using std::chrono::milliseconds;

TEST_CASE("the reconnection back-off grows, stops at its cap, and jitter only shortens it") {
    ReconnectOptions options;
    options.initial_delay = milliseconds{100};
    options.max_delay = milliseconds{1000};
    options.multiplier = 2.0;
    options.jitter = 0.5;
    CHECK(reconnect_delay(options, 1, 0.0) == milliseconds{100});
    CHECK(reconnect_delay(options, 2, 0.0) == milliseconds{200});
    CHECK(reconnect_delay(options, 4, 0.0) == milliseconds{800});
    CHECK(reconnect_delay(options, 5, 0.0) == milliseconds{1000});
    CHECK(reconnect_delay(options, 4000000000U, 0.0) == milliseconds{1000});  // no overflow
    CHECK(reconnect_delay(options, 2, 1.0) == milliseconds{100});            // half of 200
    CHECK(reconnect_delay(options, 5, 0.5) == milliseconds{750});
    options.jitter = 0.0;
    CHECK(reconnect_delay(options, 3, 1.0) == milliseconds{400});
    // Nonsense settings stay within sense: no growth below 1, jitter within 0..1.
    options.multiplier = 0.5;
    options.jitter = 7.0;
    CHECK(reconnect_delay(options, 3, 0.0) == milliseconds{100});
    CHECK(reconnect_delay(options, 3, 1.0) == milliseconds{0});
}

TEST_CASE("the server's replies, read where the conversation is") {
    ServerReplies replies;
    SUBCASE("accepted, then messages and errors") {
        replies.expect_connect_answer();
        CHECK(replies.read(kConnAccepted).kind == ServerReplies::Kind::accepted);
        const auto message = replies.read("room/1 hello there");
        CHECK(message.kind == ServerReplies::Kind::message);
        CHECK(message.topic == "room/1");
        CHECK(message.text == "hello there");
        const auto error = replies.read("ERROR: Not allowed to publish to 'x'");
        CHECK(error.kind == ServerReplies::Kind::error);
        CHECK(error.text == "ERROR: Not allowed to publish to 'x'");
        CHECK(replies.read(kConnAccepted).kind == ServerReplies::Kind::nothing);  // stray
    }
    SUBCASE("restored: the next frame is the topic list, even one that looks like a reply") {
        replies.expect_connect_answer();
        CHECK(replies.read("RESTORED me").kind == ServerReplies::Kind::nothing);
        const auto list = replies.read("ERROR: a/b");
        CHECK(list.kind == ServerReplies::Kind::restored);
        CHECK(split_topic_list(list.text) == std::vector<std::string>{"ERROR:", "a/b"});
        CHECK(replies.read("a/b x").kind == ServerReplies::Kind::message);
    }
    SUBCASE("a refusal, and an answer that is no answer") {
        replies.expect_connect_answer();
        const auto refused = replies.read(kNameTaken);
        CHECK(refused.kind == ServerReplies::Kind::refused);
        CHECK(refused.text == kNameTaken);
        replies.expect_connect_answer();
        CHECK(replies.read("HTTP/1.1 400 Bad Request").kind == ServerReplies::Kind::refused);
    }
    CHECK(split_topic_list("") == std::vector<std::string>{});
    CHECK(connect_frame("n", "") == "CONNECT n");
    CHECK(connect_frame("n", "s") == "CONNECT n s");
}

TEST_CASE("each of the broker's ERROR: frames has its code") {
    CHECK(classify_error_frame(kNameTaken) == client_errc::name_taken);
    CHECK(classify_error_frame(kNotAuthorized) == client_errc::not_authorized);
    CHECK(classify_error_frame(kInvalidTopic) == client_errc::invalid_topic);
    CHECK(classify_error_frame("ERROR: Not authorized: too many failed attempts, retry in 2 s") ==
          client_errc::not_authorized);
    CHECK(classify_error_frame("ERROR: Invalid name (1 to 64 bytes)") == client_errc::invalid_name);
    CHECK(classify_error_frame("ERROR: Server is full, try again later") ==
          client_errc::server_full);
    CHECK(classify_error_frame("ERROR: Name is moving to another node of the cluster; retry") ==
          client_errc::name_moving);
    CHECK(classify_error_frame("ERROR: Not allowed to subscribe to 'a'") ==
          client_errc::not_allowed);
    CHECK(classify_error_frame("ERROR: Wildcards are not allowed in a PUBLISH topic") ==
          client_errc::invalid_topic);
    CHECK(classify_error_frame("ERROR: Topics under $SYS/ are the broker's own") ==
          client_errc::invalid_topic);
    CHECK(classify_error_frame("ERROR: Too many levels in a wildcard filter") ==
          client_errc::invalid_topic);
    CHECK(classify_error_frame("ERROR: Too many subscriptions (the limit is 3)") ==
          client_errc::too_many_subscriptions);
    CHECK(classify_error_frame("ERROR: Topic too long (the limit is 9)") ==
          client_errc::topic_too_long);
    CHECK(classify_error_frame("ERROR: Frame too long (the limit is 9)") ==
          client_errc::frame_too_long);
    CHECK(classify_error_frame("ERROR: something new") == client_errc::broker_error);
    const std::error_code code = client_errc::name_taken;
    CHECK(code.category().name() == std::string{"pubsubx"});
    CHECK(code.message() == "name already taken");
}
