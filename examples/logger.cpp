// logger: appends every message of a topic filter to a file, one "topic data" line each.
//
//     logger localhost 12000 'sensors/#' sensors.log
//     logger localhost 12000 'sensors/#' sensors.log --name sensor-log --secret s3cret
//
// The file is flushed once per read from the broker (set_batch_handler), not once per message.
// With --count N it leaves after N messages; Ctrl-C or SIGTERM leave with a DISCONNECT. With a
// fixed --name and --secret, a logger that died (or lost its network) and is started again
// within the broker's retention period gets the messages it missed.
#include <asio/io_context.hpp>
#include <asio/signal_set.hpp>
#include <charconv>
#include <csignal>
#include <cstdint>
#include <fstream>
#include <iostream>
#include <optional>
#include <pubsubx/client.hpp>
#include <random>
#include <string>
#include <string_view>

namespace {

constexpr std::string_view kUsage =
    "usage: logger HOST PORT FILTER FILE [--count N] [--name NAME --secret SECRET]\n"
    "  Appends \"topic data\" to FILE for each message matching FILTER (a topic, or a filter\n"
    "  with '+' and '#'), until N messages were written or Ctrl-C.\n";

int usage(std::string_view problem) {
    std::cerr << "logger: " << problem << '\n' << kUsage;
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

std::string random_hex(std::size_t length) {
    std::random_device random;
    std::uniform_int_distribution<int> digit{0, 15};
    std::string text;
    for (std::size_t i = 0; i < length; ++i) {
        text += "0123456789abcdef"[digit(random)];
    }
    return text;
}

struct Settings {
    pubsubx::ClientOptions client;
    std::string filter;
    std::string file;
    std::uint64_t count = 0;  // 0: until a signal
};

class Logger {
  public:
    Logger(asio::io_context& io, Settings settings)
        : client_(io.get_executor(), std::move(settings.client)),
          filter_(std::move(settings.filter)),
          file_name_(std::move(settings.file)),
          count_(settings.count),
          signals_(client_.get_executor(), SIGINT, SIGTERM) {}

    void start() {
        file_.open(file_name_, std::ios::app);
        if (!file_) {
            std::cerr << "logger: cannot open " << file_name_ << " for appending\n";
            exit_code_ = 1;
            return;
        }
        // Handlers run on the client's strand, one at a time, like the signal handler below.
        client_.set_message_handler(
            [this](std::string_view topic, std::string_view data) { on_message(topic, data); });
        client_.set_batch_handler([this] { on_batch_end(); });
        client_.set_event_handler([this](const pubsubx::ClientEvent& event) { on_event(event); });
        client_.async_connect([this](std::error_code error, const pubsubx::SessionInfo& info) {
            on_connected(error, info);
        });
        signals_.async_wait([this](std::error_code error, int) {
            if (!error) {
                leave(0);
            }
        });
    }

    int exit_code() const { return exit_code_; }

  private:
    void on_connected(std::error_code error, const pubsubx::SessionInfo& info) {
        if (error) {
            if (leaving_) {
                return;  // a signal while connecting
            }
            const auto& options = client_.options();
            std::cerr << "logger: cannot connect to " << options.host << ':' << options.port << ": "
                      << (info.reason.empty() ? error.message() : info.reason) << '\n';
            stop_waiting(1);
            return;
        }
        connected_ = true;
        if (info.restored) {
            std::cerr << "logger: resumed the session of " << client_.options().name
                      << "; the messages it missed follow\n";
        }
        client_.async_subscribe(filter_, [this](std::error_code error) {
            if (error == pubsubx::client_errc::invalid_topic) {
                usage("invalid FILTER '" + filter_ + "' ('#' only as the last level)");
                leave(2);
            } else if (error) {
                std::cerr << "logger: cannot subscribe to " << filter_ << ": " << error.message()
                          << '\n';
                leave(1);
            } else {
                std::cerr << "logger: subscribed to " << filter_ << ", appending to " << file_name_
                          << '\n';
            }
        });
    }

    void on_message(std::string_view topic, std::string_view data) {
        if (count_ != 0 && written_ == count_) {
            return;  // more arrived in the same read: not ours to write
        }
        file_ << topic << ' ' << data << '\n';
        ++written_;
    }

    // All messages of one read from the broker were handed on: one flush for all of them.
    void on_batch_end() {
        if (!file_.flush()) {
            std::cerr << "logger: cannot write to " << file_name_ << '\n';
            leave(1);
            return;
        }
        if (count_ != 0 && written_ == count_) {
            leave(0);
        }
    }

    void on_event(const pubsubx::ClientEvent& event) {
        using Kind = pubsubx::ClientEventKind;
        switch (event.kind) {
            case Kind::connected:
                break;
            case Kind::lost:
                std::cerr << "logger: connection lost (" << event.text << ")\n";
                break;
            case Kind::reconnecting:
                std::cerr << "logger: reconnecting in " << event.delay.count() << " ms (attempt "
                          << event.attempt << ")\n";
                break;
            case Kind::restored:
                std::cerr << "logger: reconnected; the messages missed meanwhile follow\n";
                break;
            case Kind::resubscribed:
                std::cerr << "logger: reconnected, but the broker had forgotten this session: "
                             "messages published meanwhile are missing from "
                          << file_name_ << '\n';
                break;
            case Kind::refused:
                if (connected_) {  // a refused first CONNECT is on_connected's to report
                    std::cerr << "logger: the broker refused to resume: " << event.text << '\n';
                }
                break;
            case Kind::broker_error:
                // The only thing this program sends is its SUBSCRIBE.
                std::cerr << "logger: the broker refused the subscription: " << event.text << '\n';
                leave(1);
                break;
            case Kind::closed:
                if (connected_ && !leaving_) {
                    std::cerr << "logger: gave up on the broker\n";
                    stop_waiting(1);
                }
                break;
        }
    }

    void leave(int code) {
        if (leaving_) {
            return;
        }
        stop_waiting(code);
        client_.async_disconnect([this](std::error_code) {
            std::cerr << "logger: " << written_ << " message(s) written to " << file_name_ << '\n';
        });
    }

    void stop_waiting(int code) {
        leaving_ = true;
        exit_code_ = code;
        signals_.cancel();
    }

    pubsubx::Client client_;
    const std::string filter_;
    const std::string file_name_;
    const std::uint64_t count_;
    asio::signal_set signals_;
    std::ofstream file_;
    std::uint64_t written_ = 0;
    bool connected_ = false;
    bool leaving_ = false;
    int exit_code_ = 0;
};

std::optional<Settings> parse_arguments(int argc, char** argv, std::string& problem) {
    if (argc < 5) {
        problem = "expected HOST PORT FILTER FILE";
        return std::nullopt;
    }
    Settings settings;
    settings.client.host = argv[1];
    const auto port = parse_number<unsigned>(argv[2], 1, 65535);
    if (!port) {
        problem = "PORT must be a number from 1 to 65535";
        return std::nullopt;
    }
    settings.client.port = static_cast<std::uint16_t>(*port);
    settings.filter = argv[3];
    settings.file = argv[4];
    for (int i = 5; i < argc; i += 2) {
        const std::string_view option = argv[i];
        if (i + 1 == argc) {
            problem = std::string{option} + " needs a value";
            return std::nullopt;
        }
        const std::string_view value = argv[i + 1];
        if (option == "--count") {
            const auto count = parse_number<std::uint64_t>(value, 1, UINT64_MAX);
            if (!count) {
                problem = "--count must be a number of messages, at least 1";
                return std::nullopt;
            }
            settings.count = *count;
        } else if (option == "--name") {
            settings.client.name = value;
        } else if (option == "--secret") {
            settings.client.secret = value;
        } else {
            problem = "unknown option " + std::string{option};
            return std::nullopt;
        }
    }
    if (settings.client.name.empty()) {
        if (!settings.client.secret.empty()) {
            problem = "--secret goes with --name";
            return std::nullopt;
        }
        settings.client.name = "logger-" + random_hex(8);
    }
    return settings;
}

}  // namespace

int main(int argc, char** argv) {
    std::string problem;
    std::optional<Settings> settings = parse_arguments(argc, argv, problem);
    if (!settings) {
        return usage(problem);
    }
    asio::io_context io;
    Logger logger{io, std::move(*settings)};
    logger.start();
    io.run();
    return logger.exit_code();
}
