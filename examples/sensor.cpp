// sensor: publishes a numbered reading to a topic at a steady pace, and keeps doing so while
// the broker is away: the library keeps those readings in its offline buffer and sends them
// once the session is back. At the end it prints what happened to them.
//
//     sensor localhost 12000 sensors/kitchen/temp --count 100 --interval-ms 200
//
// The asynchronous API with callbacks: a timer paces the readings, async_publish reports each.
#include <asio/io_context.hpp>
#include <asio/signal_set.hpp>
#include <asio/steady_timer.hpp>
#include <charconv>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <iostream>
#include <optional>
#include <pubsubx/client.hpp>
#include <random>
#include <sstream>
#include <string>
#include <string_view>

namespace {

using namespace std::chrono_literals;

constexpr std::string_view kUsage =
    "usage: sensor HOST PORT TOPIC [--count N] [--interval-ms MS] [--name NAME] [--secret SECRET]\n"
    "  Publishes \"N VALUE\" to TOPIC every MS milliseconds (default 1000), N times (default 0:\n"
    "  until Ctrl-C). A fixed NAME and SECRET let a restarted sensor take its session over.\n";

int usage(std::string_view problem) {
    std::cerr << "sensor: " << problem << '\n' << kUsage;
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
    std::string topic;
    std::uint64_t count = 0;
    std::chrono::milliseconds interval{1000};
};

class Sensor {
  public:
    Sensor(asio::io_context& io, Settings settings)
        : client_(io.get_executor(), std::move(settings.client)),
          topic_(std::move(settings.topic)),
          count_(settings.count),
          interval_(settings.interval),
          tick_(client_.get_executor()),
          signals_(client_.get_executor(), SIGINT, SIGTERM) {}

    void start() {
        client_.set_event_handler([this](const pubsubx::ClientEvent& event) { on_event(event); });
        client_.async_connect([this](std::error_code error, const pubsubx::SessionInfo& info) {
            if (error) {
                if (finishing_) {
                    return;  // Ctrl-C while connecting
                }
                const auto& options = client_.options();
                std::cerr << "sensor: cannot connect to " << options.host << ':' << options.port
                          << ": " << (info.reason.empty() ? error.message() : info.reason) << '\n';
                signals_.cancel();
                exit_code_ = 1;
                return;
            }
            std::cerr << "sensor: publishing to " << topic_ << " as " << client_.options().name
                      << " every " << interval_.count() << " ms\n";
            next_reading_at_ = std::chrono::steady_clock::now();
            publish_reading();
        });
        signals_.async_wait([this](std::error_code error, int) {
            if (!error) {
                finish();
            }
        });
    }

    int exit_code() const { return exit_code_; }

  private:
    // A reading that moves slowly, as a room's temperature does.
    static std::string reading(std::uint64_t number) {
        std::ostringstream text;
        text.setf(std::ios::fixed);
        text.precision(1);
        text << number << ' ' << 20.0 + 2.5 * std::sin(static_cast<double>(number) / 10.0);
        return text.str();
    }

    void publish_reading() {
        const std::uint64_t number = ++published_;
        // Completes once the frame is written, or at once when it is kept in the offline buffer.
        client_.async_publish(topic_, reading(number), [this, number](std::error_code error) {
            if (error == pubsubx::client_errc::connection_lost) {
                ++uncertain_;  // written just before the connection broke: it may not have arrived
            } else if (error == pubsubx::client_errc::invalid_topic) {
                usage("invalid TOPIC (no spaces, and no '+' or '#' level)");
                exit_code_ = 2;
                finish();
            } else if (error) {
                std::cerr << "sensor: reading " << number << " not sent: " << error.message()
                          << '\n';
            }
        });
        if (count_ != 0 && published_ == count_) {
            finish();
            return;
        }
        // Paced from the start, so that a slow moment does not shift every later reading.
        next_reading_at_ += interval_;
        tick_.expires_at(next_reading_at_);
        tick_.async_wait([this](std::error_code error) {
            if (!error) {
                publish_reading();
            }
        });
    }

    // Gives readings still in the offline buffer some time to go out, then says DISCONNECT.
    void finish() {
        if (finishing_) {
            return;
        }
        finishing_ = true;
        tick_.cancel();
        signals_.cancel();
        drain_deadline_ = std::chrono::steady_clock::now() + 30s;
        wait_for_offline_buffer();
    }

    void wait_for_offline_buffer() {
        const pubsubx::ClientStats stats = client_.stats();
        if (stats.offline_bytes != 0 && !closed_ &&
            std::chrono::steady_clock::now() < drain_deadline_) {
            if (!said_waiting_) {
                said_waiting_ = true;
                std::cerr << "sensor: waiting up to 30 s for the broker to take the "
                          << stats.offline_bytes << " bytes of readings kept meanwhile\n";
            }
            tick_.expires_after(100ms);
            tick_.async_wait([this](std::error_code error) {
                if (!error) {
                    wait_for_offline_buffer();
                }
            });
            return;
        }
        client_.async_disconnect([this](std::error_code) {
            if (exit_code_ != 2) {
                print_stats();
            }
        });
    }

    void print_stats() const {
        const pubsubx::ClientStats stats = client_.stats();
        std::cout << "readings: " << published_ << '\n'
                  << "written to the broker's connection: " << stats.publishes_sent << '\n'
                  << "kept while the broker was away: " << stats.publishes_buffered << '\n'
                  << "dropped (offline buffer full, or unsent at the end): "
                  << stats.publishes_dropped << '\n'
                  << "written just before a connection broke (may be lost): " << uncertain_ << '\n'
                  << "reconnections: " << stats.reconnects << '\n';
    }

    void on_event(const pubsubx::ClientEvent& event) {
        using Kind = pubsubx::ClientEventKind;
        switch (event.kind) {
            case Kind::connected:
                break;
            case Kind::lost:
                std::cerr << "sensor: connection lost (" << event.text
                          << "); readings are kept until it is back\n";
                break;
            case Kind::reconnecting:
                std::cerr << "sensor: reconnecting in " << event.delay.count() << " ms (attempt "
                          << event.attempt << ")\n";
                break;
            case Kind::restored:
            case Kind::resubscribed:
                std::cerr << "sensor: reconnected; sending the " << client_.stats().offline_bytes
                          << " bytes of readings kept meanwhile\n";
                break;
            case Kind::refused:
            case Kind::broker_error:
                std::cerr << "sensor: " << event.text << '\n';
                break;
            case Kind::closed:
                closed_ = true;
                if (!finishing_ && published_ != 0) {
                    std::cerr << "sensor: gave up on the broker (" << event.text << ")\n";
                    exit_code_ = 1;
                    finish();
                }
                break;
        }
    }

    pubsubx::Client client_;
    const std::string topic_;
    const std::uint64_t count_;
    const std::chrono::milliseconds interval_;
    asio::steady_timer tick_;
    asio::signal_set signals_;
    std::chrono::steady_clock::time_point next_reading_at_;
    std::chrono::steady_clock::time_point drain_deadline_;
    std::uint64_t published_ = 0;
    std::uint64_t uncertain_ = 0;
    bool finishing_ = false;
    bool said_waiting_ = false;
    bool closed_ = false;
    int exit_code_ = 0;
};

std::optional<Settings> parse_arguments(int argc, char** argv, std::string& problem) {
    if (argc < 4) {
        problem = "expected HOST PORT TOPIC";
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
    settings.topic = argv[3];
    for (int i = 4; i < argc; i += 2) {
        const std::string_view option = argv[i];
        if (i + 1 == argc) {
            problem = std::string{option} + " needs a value";
            return std::nullopt;
        }
        const std::string_view value = argv[i + 1];
        if (option == "--count") {
            const auto count = parse_number<std::uint64_t>(value, 0, UINT64_MAX);
            if (!count) {
                problem = "--count must be a whole number (0: until Ctrl-C)";
                return std::nullopt;
            }
            settings.count = *count;
        } else if (option == "--interval-ms") {
            const auto interval = parse_number<std::int64_t>(value, 1, 86'400'000);
            if (!interval) {
                problem = "--interval-ms must be a number of milliseconds, at least 1";
                return std::nullopt;
            }
            settings.interval = std::chrono::milliseconds{*interval};
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
        // A name and secret of its own: only this process can resume its session.
        settings.client.name = "sensor-" + random_hex(8);
        if (settings.client.secret.empty()) {
            settings.client.secret = random_hex(32);
        }
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
    Sensor sensor{io, std::move(*settings)};
    sensor.start();
    io.run();
    return sensor.exit_code();
}
