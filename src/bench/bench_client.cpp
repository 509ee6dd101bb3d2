#include "bench_client.hpp"

#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <ctime>

namespace pubsubx::bench {

BenchClient::BenchClient(Loop& loop, const Endpoint& endpoint, std::string name,
                         std::string_view secret)
    : name_(std::move(name)),
      link_(loop, endpoint, [this](std::string_view frame) { on_frame(frame); }) {
    link_.queue_frame(client::connect_frame(name_, secret));
    replies_.expect_connect_answer();
}

BenchClient::~BenchClient() {
    if (!link_.closed() && accepted()) {
        link_.send_frame("DISCONNECT");
    }
}

bool BenchClient::accepted() const {
    return reply_ == kConnAccepted || restored();
}

bool BenchClient::restored() const {
    return reply_.starts_with(kRestoredPrefix);
}

// The library's reading of the server's frames (src/libclient/server_replies.hpp).
void BenchClient::on_frame(std::string_view frame) {
    const client::ServerReplies::Reply reply = replies_.read(frame);
    switch (reply.kind) {
        case client::ServerReplies::Kind::accepted:
        case client::ServerReplies::Kind::refused:
            reply_.assign(frame);
            return;
        case client::ServerReplies::Kind::restored:
            reply_ = std::string{kRestoredPrefix} + name_;  // its topic list has come too
            return;
        case client::ServerReplies::Kind::error:
            if (errors_++ == 0) {
                first_error_.assign(reply.text);
            }
            return;
        case client::ServerReplies::Kind::message:
            if (on_message_ && reply.topic.size() < frame.size()) {
                on_message_(reply.topic, reply.text);
            }
            return;
        case client::ServerReplies::Kind::nothing:
            return;
    }
}

bool connect_all(Loop& loop, std::vector<std::unique_ptr<BenchClient>>& clients,
                 std::chrono::milliseconds timeout) {
    for (auto& client : clients) {
        client->link().flush();
    }
    const bool answered = loop.run_until(
        [&] {
            for (const auto& client : clients) {
                if (!client->answered()) {
                    return false;
                }
            }
            return true;
        },
        timeout);
    if (!answered) {
        return false;
    }
    for (const auto& client : clients) {
        if (!client->accepted()) {
            return false;
        }
    }
    return true;
}

std::string first_error(const std::vector<std::unique_ptr<BenchClient>>& clients) {
    for (const auto& client : clients) {
        if (client->errors() > 0) {
            return client->first_error();
        }
    }
    return {};
}

std::string bench_name(std::string_view role, long index) {
    std::string name = "bench-";
    name.append(std::to_string(getpid())).append("-").append(role);
    if (index >= 0) {
        name.append(std::to_string(index));
    }
    return name;
}

namespace {
template <typename Number>
void append_number(std::string& out, Number value) {
    char digits[24];
    const auto converted = std::to_chars(digits, digits + sizeof digits, value, 16);
    out.append(digits, converted.ptr);
}
}  // namespace

void append_payload(std::string& out, int publisher, long sequence, std::int64_t sent_ns,
                    std::size_t size) {
    const std::size_t start = out.size();
    append_number(out, publisher);
    out.push_back(':');
    append_number(out, sequence);
    out.push_back(':');
    append_number(out, sent_ns);
    if (out.size() - start < size) {
        out.append(size - (out.size() - start), '.');
    }
}

Payload parse_payload(std::string_view data) {
    Payload payload;
    if (data.starts_with('~')) {
        payload.probe = true;
        data.remove_prefix(1);
    }
    const char* at = data.data();
    const char* const end = data.data() + data.size();
    int publisher = -1;
    auto parsed = std::from_chars(at, end, publisher, 16);
    if (parsed.ec != std::errc{} || parsed.ptr == end || *parsed.ptr != ':') {
        return payload;
    }
    parsed = std::from_chars(parsed.ptr + 1, end, payload.sequence, 16);
    if (parsed.ec != std::errc{} || parsed.ptr == end || *parsed.ptr != ':') {
        return payload;
    }
    parsed = std::from_chars(parsed.ptr + 1, end, payload.sent_ns, 16);
    if (parsed.ec != std::errc{}) {
        return payload;
    }
    payload.publisher = publisher;
    return payload;
}

std::int64_t now_ns() {
    const auto monotonic = [] {
        timespec now{};
        clock_gettime(CLOCK_MONOTONIC, &now);
        return static_cast<std::int64_t>(now.tv_sec) * 1'000'000'000 + now.tv_nsec;
    };
    // Counted from the first call, so that a send time fits a 16-byte payload in hex.
    static const std::int64_t epoch = monotonic();
    return monotonic() - epoch;
}

void OrderCheck::accept(const Payload& payload) {
    if (payload.publisher < 0 || static_cast<std::size_t>(payload.publisher) >= next_.size()) {
        ++unrecognised_;
        return;
    }
    long& next = next_[static_cast<std::size_t>(payload.publisher)];
    if (payload.sequence < next) {
        ++duplicates_;
        return;
    }
    if (payload.sequence > next) {
        ++out_of_order_;  // a gap: something before it is missing
    }
    next = payload.sequence + 1;
    ++delivered_;
}

Progress::Progress(std::string label) : label_(std::move(label)) {}

Progress::~Progress() {
    if (printed_) {
        std::fputc('\n', stderr);
    }
}

void Progress::update(long done, long total) {
    const auto now = BenchClock::now();
    if (now - started_ < std::chrono::seconds{1} || now - last_ < std::chrono::seconds{1}) {
        return;
    }
    last_ = now;
    printed_ = true;
    const long percent = total > 0 ? done * 100 / total : 0;
    std::fprintf(stderr, "\r  %s: %ld%% (%s of %s)   ", label_.c_str(), percent,
                 with_thousands(done).c_str(), with_thousands(total).c_str());
    std::fflush(stderr);
}

std::string with_thousands(long value) {
    const std::string digits = std::to_string(value < 0 ? -value : value);
    std::string text;
    if (value < 0) {
        text.push_back('-');
    }
    for (std::size_t i = 0; i < digits.size(); ++i) {
        if (i > 0 && (digits.size() - i) % 3 == 0) {
            text.push_back(',');
        }
        text.push_back(digits[i]);
    }
    return text;
}

}  // namespace pubsubx::bench
