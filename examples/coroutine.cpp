// coroutine: a round trip through the broker written as straight-line code with C++20
// coroutines (asio::co_spawn, asio::use_awaitable): connect, subscribe, publish N messages,
// await them back in order, disconnect.
//
//     coroutine localhost 12000 --count 5
#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <deque>
#include <exception>
#include <iostream>
#include <optional>
#include <pubsubx/client.hpp>
#include <random>
#include <string>
#include <string_view>

namespace {

using namespace std::chrono_literals;

constexpr std::string_view kUsage =
    "usage: coroutine HOST PORT [--count N]\n"
    "  Publishes N messages (default 5) to a topic of its own and awaits them back.\n";

int usage(std::string_view problem) {
    std::cerr << "coroutine: " << problem << '\n' << kUsage;
    return 2;
}

template <typename Number>
std::optional<Number> parse_number(std::string_view text, Number low, Number high) {
    Number value{};
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (error != std::errc{} || end != text.data() + text.size() || value < low || value > high) {
        return std::nullopt;
    }
    return value;
}

struct Message {
    std::string topic;
    std::string data;
};

// Messages from the client's message handler, awaited by the coroutine. Both run on the
// client's strand. The timer is the wake-up signal, as in Asio's coroutine chat example: a
// message cancels the wait, and the timer's own expiry is the deadline.
class Inbox {
  public:
    explicit Inbox(const asio::any_io_executor& executor) : signal_(executor) {}

    void push(std::string_view topic, std::string_view data) {
        messages_.push_back({std::string{topic}, std::string{data}});
        signal_.cancel_one();
    }

    // The next message, or nothing if none arrives within `timeout`.
    asio::awaitable<std::optional<Message>> next(std::chrono::milliseconds timeout) {
        signal_.expires_after(timeout);
        while (messages_.empty()) {
            std::error_code error;
            co_await signal_.async_wait(asio::redirect_error(asio::use_awaitable, error));
            if (!error && messages_.empty()) {
                co_return std::nullopt;  // the deadline passed
            }
        }
        Message message = std::move(messages_.front());
        messages_.pop_front();
        co_return message;
    }

  private:
    asio::steady_timer signal_;
    std::deque<Message> messages_;
};

// Returns the exit code. A failed operation throws std::system_error (use_awaitable's way);
// the connect is awaited with redirect_error instead, to print the broker's reason.
asio::awaitable<int> round_trip(pubsubx::Client& client, Inbox& inbox, int count) {
    const pubsubx::ClientOptions& options = client.options();
    std::error_code error;
    const pubsubx::SessionInfo session =
        co_await client.async_connect(asio::redirect_error(asio::use_awaitable, error));
    if (error) {
        std::cerr << "coroutine: cannot connect to " << options.host << ':' << options.port << ": "
                  << (session.reason.empty() ? error.message() : session.reason) << '\n';
        co_return 1;
    }
    const std::string topic = "examples/coroutine/" + options.name;
    co_await client.async_subscribe(topic, asio::use_awaitable);
    std::cout << "subscribed to " << topic << '\n';

    const auto start = std::chrono::steady_clock::now();
    for (int i = 1; i <= count; ++i) {
        // Completes once the frame is written: each await paces the loop to the connection.
        co_await client.async_publish(topic, "message " + std::to_string(i), asio::use_awaitable);
    }
    for (int i = 1; i <= count; ++i) {
        const std::optional<Message> message = co_await inbox.next(5s);
        if (!message) {
            std::cerr << "coroutine: message " << i << " did not come back within 5 s\n";
            co_await client.async_disconnect(asio::use_awaitable);
            co_return 1;
        }
        std::cout << "received " << message->topic << ' ' << message->data << '\n';
    }
    const auto elapsed = std::chrono::steady_clock::now() - start;
    std::cout << count << " message(s) round trip in "
              << std::chrono::duration_cast<std::chrono::microseconds>(elapsed).count() << " us\n";

    co_await client.async_disconnect(asio::use_awaitable);
    co_return 0;
}

std::string random_hex(std::size_t length) {
    std::random_device random;
    std::uniform_int_distribution<int> digit{0, 15};
    std::string text;
    for (std::size_t i = 0; i < length; ++i) {
        text += "0123456789abcdef"[digit(random)];
    }
    return text;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 3 && argc != 5) {
        return usage("expected HOST PORT [--count N]");
    }
    const auto port = parse_number<unsigned>(argv[2], 1, 65535);
    if (!port) {
        return usage("PORT must be a number from 1 to 65535");
    }
    int count = 5;
    if (argc == 5) {
        const auto parsed = parse_number<int>(argv[4], 1, 1'000'000);
        if (std::string_view{argv[3]} != "--count" || !parsed) {
            return usage("expected --count N, N from 1 to 1000000");
        }
        count = *parsed;
    }

    asio::io_context io;
    pubsubx::ClientOptions options;
    options.host = argv[1];
    options.port = static_cast<std::uint16_t>(*port);
    options.name = "coroutine-" + random_hex(8);
    pubsubx::Client client{io.get_executor(), std::move(options)};
    Inbox inbox{client.get_executor()};
    client.set_message_handler(
        [&inbox](std::string_view topic, std::string_view data) { inbox.push(topic, data); });

    int exit_code = 1;
    // On the client's strand, like the message handler: the inbox needs no lock.
    asio::co_spawn(client.get_executor(), round_trip(client, inbox, count),
                   [&](std::exception_ptr failure, int code) {
                       if (!failure) {
                           exit_code = code;
                           return;
                       }
                       try {
                           std::rethrow_exception(failure);
                       } catch (const std::exception& e) {
                           std::cerr << "coroutine: " << e.what() << '\n';
                       }
                       client.abort();  // so that io.run() returns
                   });
    io.run();
    return exit_code;
}
