// `pubsubx-client pub` and `pubsubx-client sub`: one-shot publishing and subscribing for
// scripts, like mosquitto_pub/mosquitto_sub. Exit codes: 0 ok, 1 connection or protocol error.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "pubsubx/client.hpp"
#include "runtime.hpp"

namespace pubsubx::client {

struct Endpoint {
    std::string host = "localhost";
    std::uint16_t port = 12000;
    std::string name;    // empty: a unique one is made up
    std::string secret;  // empty: none (anyone with the name may resume the session)
    // After DISCONNECT, how long to read on for the error frames the server still owes us
    // (a refused PUBLISH or SUBSCRIBE) until it closes the connection.
    std::chrono::steady_clock::duration answer_timeout = std::chrono::seconds{10};
    TlsOptions tls;  // --tls
};

struct PublishOptions {
    Endpoint endpoint;
    std::string topic;
    std::optional<std::string> message;  // -m; without it, each line of stdin (-l)
};

struct SubscribeOptions {
    Endpoint endpoint;
    std::vector<std::string> topics;
    std::optional<std::uint64_t> count;  // exit after this many messages
    bool with_topic = false;             // print `topic data` instead of `data`
};

// A name unique to this process and moment, within the protocol's 64 bytes.
std::string generate_client_name(std::string_view prefix);

int run_publish(const PublishOptions& options);
int run_subscribe(const SubscribeOptions& options);

}  // namespace pubsubx::client
