// chat: a chat room in a terminal. Start two against one broker:
//
//     chat localhost 12000 lobby alice          chat localhost 12000 lobby bob
//
// Each line typed is published to chat/ROOM as "NICK: line"; the others' lines are printed.
// Restart the broker meanwhile: the client reconnects by itself and says so on stderr.
//
// Everything runs on the client's strand: the library's handlers, standard input and the
// signals, so nothing here needs a lock.
#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/read_until.hpp>
#include <asio/signal_set.hpp>
#include <charconv>
#include <csignal>
#include <cstdint>
#include <iostream>
#include <optional>
#include <pubsubx/client.hpp>
#include <string>
#include <string_view>

namespace {

constexpr std::string_view kUsage =
    "usage: chat HOST PORT ROOM NICK\n"
    "  Publishes each line of standard input to chat/ROOM as \"NICK: line\" and prints the\n"
    "  lines of the others in the room. End of input (Ctrl-D) or Ctrl-C leaves.\n";

int usage(std::string_view problem) {
    std::cerr << "chat: " << problem << '\n' << kUsage;
    return 2;
}

std::optional<std::uint16_t> parse_port(std::string_view text) {
    unsigned value = 0;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (error != std::errc{} || end != text.data() + text.size() || value == 0 || value > 65535) {
        return std::nullopt;
    }
    return static_cast<std::uint16_t>(value);
}

// A room or a nick becomes one level of a topic and part of a client name: no spaces, no
// control characters, no '/', and no '+' or '#' (the wildcards).
bool is_plain_word(std::string_view word) {
    if (word.empty() || word.size() > 32) {
        return false;
    }
    for (const char c : word) {
        const auto byte = static_cast<unsigned char>(c);
        if (byte <= ' ' || byte == 0x7f || c == '/' || c == '+' || c == '#') {
            return false;
        }
    }
    return true;
}

class ChatRoom {
  public:
    ChatRoom(asio::io_context& io, pubsubx::ClientOptions options, std::string room,
             std::string nick)
        : client_(io.get_executor(), std::move(options)),
          input_(client_.get_executor()),
          signals_(client_.get_executor(), SIGINT, SIGTERM),
          topic_("chat/" + room),
          nick_(std::move(nick)),
          own_prefix_(nick_ + ": ") {}

    void start() {
        std::error_code error;
        // Standard input read through Asio, on the same strand as the client: a terminal, a pipe
        // or a file.
        input_.assign(0, error);
        if (error) {
            std::cerr << "chat: cannot read standard input: " << error.message() << '\n';
            exit_code_ = 1;
            return;
        }
        client_.set_message_handler(
            [this](std::string_view topic, std::string_view data) { on_message(topic, data); });
        client_.set_batch_handler([] { std::cout.flush(); });
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
                return;  // Ctrl-C while connecting
            }
            const auto& options = client_.options();
            if (error == pubsubx::client_errc::name_taken) {
                std::cerr << "chat: the nick '" << nick_ << "' is in use on this broker\n";
            } else {
                std::cerr << "chat: cannot connect to " << options.host << ':' << options.port
                          << ": " << (info.reason.empty() ? error.message() : info.reason) << '\n';
            }
            stop_waiting(1);
            return;
        }
        joined_ = true;
        client_.async_subscribe(topic_, [this](std::error_code error) {
            if (error) {
                std::cerr << "chat: cannot join " << topic_ << ": " << error.message() << '\n';
                leave(1);
            }
        });
        std::cerr << "chat: joined " << topic_ << " as " << nick_ << " (Ctrl-D leaves)\n";
        read_line();
    }

    void read_line() {
        asio::async_read_until(input_, asio::dynamic_buffer(input_buffer_), '\n',
                               [this](std::error_code error, std::size_t length) {
                                   if (error == asio::error::operation_aborted) {
                                       return;
                                   }
                                   if (error) {
                                       // End of input: a last line without its newline goes too.
                                       say(input_buffer_);
                                       leave(0);
                                       return;
                                   }
                                   say(std::string_view{input_buffer_}.substr(0, length - 1));
                                   input_buffer_.erase(0, length);
                                   read_line();
                               });
    }

    // publish() queues the line at once, also while the broker is away (the offline buffer).
    void say(std::string_view line) {
        if (line.empty()) {
            return;
        }
        if (const std::error_code error =
                client_.publish(topic_, own_prefix_ + std::string{line})) {
            std::cerr << "chat: not sent: " << error.message() << '\n';
        }
    }

    void on_message(std::string_view, std::string_view data) {
        // Nicks are unique: each is the client's name, which the broker gives to one at a time.
        if (!data.starts_with(own_prefix_)) {
            std::cout << data << '\n';
        }
    }

    void on_event(const pubsubx::ClientEvent& event) {
        using Kind = pubsubx::ClientEventKind;
        switch (event.kind) {
            case Kind::connected:
                break;  // the first connection: on_connected says it
            case Kind::lost:
                std::cerr << "chat: connection lost (" << event.text << ")\n";
                break;
            case Kind::reconnecting:
                std::cerr << "chat: reconnecting in " << event.delay.count() << " ms (attempt "
                          << event.attempt << ")\n";
                break;
            case Kind::restored:
                std::cerr << "chat: reconnected; lines sent meanwhile follow\n";
                break;
            case Kind::resubscribed:
                std::cerr << "chat: reconnected, but the broker had forgotten us: lines sent in "
                             "the room meanwhile are lost\n";
                break;
            case Kind::refused:
                if (joined_) {  // a refused first CONNECT is on_connected's to report
                    std::cerr << "chat: the broker refused us: " << event.text << '\n';
                }
                break;
            case Kind::broker_error:
                std::cerr << "chat: " << event.text << '\n';
                break;
            case Kind::closed:
                if (joined_ && !leaving_) {
                    std::cerr << "chat: gave up on the broker\n";
                    stop_waiting(1);
                }
                break;
        }
    }

    // Says DISCONNECT (the broker then forgets us), then ends the program.
    void leave(int code) {
        if (leaving_) {
            return;
        }
        stop_waiting(code);
        client_.async_disconnect([this](std::error_code) {
            if (const auto dropped = client_.stats().publishes_dropped; dropped != 0) {
                std::cerr << "chat: " << dropped << " line(s) could not be sent\n";
            }
        });
    }

    // Nothing more is read or waited for: io.run() returns once the client is done.
    void stop_waiting(int code) {
        leaving_ = true;
        exit_code_ = code;
        signals_.cancel();
        std::error_code ignored;
        input_.cancel(ignored);
    }

    pubsubx::Client client_;
    asio::posix::stream_descriptor input_;
    asio::signal_set signals_;
    const std::string topic_;
    const std::string nick_;
    const std::string own_prefix_;
    std::string input_buffer_;
    bool joined_ = false;
    bool leaving_ = false;
    int exit_code_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
    if (argc != 5) {
        return usage("expected 4 arguments");
    }
    const std::optional<std::uint16_t> port = parse_port(argv[2]);
    if (!port) {
        return usage("PORT must be a number from 1 to 65535");
    }
    const std::string room = argv[3];
    const std::string nick = argv[4];
    if (!is_plain_word(room) || !is_plain_word(nick)) {
        return usage("ROOM and NICK: 1 to 32 bytes, no spaces, '/', '+' or '#'");
    }

    asio::io_context io;
    pubsubx::ClientOptions options;
    options.host = argv[1];
    options.port = *port;
    options.name = "chat-" + nick;
    ChatRoom chat{io, std::move(options), room, nick};
    chat.start();
    io.run();
    return chat.exit_code();
}
