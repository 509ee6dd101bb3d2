#include "command.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>

#include "pubsubx/protocol.hpp"

namespace pubsubx::client {

const char* const kHelpText =
    "Commands (the command word in any case):\n"
    "  CONNECT <port> <name>      connect to the broker on localhost:<port> as <name>\n"
    "  CONNECT <host>:<port> <name>\n"
    "                             connect to another host\n"
    "  CONNECT <port> <name> <secret>\n"
    "                             connect with a secret: only a CONNECT with the same\n"
    "                             secret can resume this session later\n"
    "  DISCONNECT                 leave; the broker forgets your subscriptions\n"
    "  PUBLISH <topic> <data>     publish <data> (spaces allowed) on <topic>\n"
    "  SUBSCRIBE <topic>          receive the messages published on <topic>\n"
    "  UNSUBSCRIBE <topic>        stop receiving them\n"
    "  -h                         this help\n"
    "End of input (Ctrl-D) or Ctrl-C disconnects and quits. After a lost connection, CONNECT\n"
    "with the same name within the broker's retention period restores your subscriptions\n"
    "and the messages you missed.\n";

namespace {

bool is_blank(char c) {
    return c == ' ' || c == '\t' || c == '\r';
}

// Splits off the next blank-separated word of `rest`.
std::string_view next_word(std::string_view& rest) {
    while (!rest.empty() && is_blank(rest.front())) {
        rest.remove_prefix(1);
    }
    std::size_t end = 0;
    while (end < rest.size() && !is_blank(rest[end])) {
        ++end;
    }
    const std::string_view word = rest.substr(0, end);
    rest.remove_prefix(end);
    return word;
}

bool equals_ignoring_case(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::toupper(static_cast<unsigned char>(x)) ==
                      std::toupper(static_cast<unsigned char>(y));
           });
}

UserCommand invalid(std::string error) {
    UserCommand command;
    command.kind = CommandKind::invalid;
    command.error = std::move(error);
    return command;
}

UserCommand parse_connect(std::string_view rest) {
    const std::string_view where = next_word(rest);
    const std::string_view name = next_word(rest);
    if (where.empty()) {
        return invalid("ERROR: Usage: CONNECT <port> <name>");
    }
    UserCommand command;
    command.kind = CommandKind::connect;
    std::string_view port_text = where;
    if (const std::size_t colon = where.rfind(':'); colon != std::string_view::npos) {
        command.host.assign(where.substr(0, colon));
        if (command.host.size() > 2 && command.host.front() == '[' && command.host.back() == ']') {
            command.host = command.host.substr(1, command.host.size() - 2);  // [::1]:12000
        }
        port_text = where.substr(colon + 1);
    }
    if (!parse_port(port_text, command.port)) {
        return invalid("ERROR: Wrong port '" + std::string{port_text} +
                       "': a number from 1 to 65535");
    }
    if (name.empty()) {
        return invalid("ERROR: Name is empty: CONNECT <port> <name>");
    }
    if (!is_valid_name(name)) {
        return invalid("ERROR: Name must be 1 to 64 bytes without control characters");
    }
    const std::string_view secret = next_word(rest);
    if (!secret.empty() && !is_valid_secret(secret)) {
        return invalid("ERROR: A secret is 1 to 128 bytes without control characters");
    }
    if (!next_word(rest).empty()) {
        return invalid("ERROR: Usage: CONNECT <port> <name> [<secret>] (no spaces in either)");
    }
    command.name.assign(name);
    command.secret.assign(secret);
    return command;
}

UserCommand parse_topic_command(CommandKind kind, std::string_view rest) {
    const std::string_view topic = next_word(rest);
    if (topic.empty()) {
        return invalid("ERROR: Topic is empty");
    }
    UserCommand command;
    command.kind = kind;
    command.topic.assign(topic);
    if (kind == CommandKind::publish) {
        // The data is everything after the topic and one separating space, as typed.
        if (!rest.empty()) {
            rest.remove_prefix(1);
        }
        command.data.assign(rest);
    } else if (!next_word(rest).empty()) {
        return invalid("ERROR: A topic has no spaces");
    }
    return command;
}

}  // namespace

bool parse_port(std::string_view text, std::uint16_t& port) {
    unsigned value = 0;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (error != std::errc{} || end != text.data() + text.size() || value < 1 || value > 65535) {
        return false;
    }
    port = static_cast<std::uint16_t>(value);
    return true;
}

UserCommand parse_user_command(std::string_view line) {
    if (!line.empty() && line.back() == '\r') {
        line.remove_suffix(1);
    }
    std::string_view rest = line;
    const std::string_view word = next_word(rest);
    if (word.empty()) {
        return {};
    }
    if (word == "-h" || word == "--help" || equals_ignoring_case(word, "HELP")) {
        UserCommand command;
        command.kind = CommandKind::help;
        return command;
    }
    if (equals_ignoring_case(word, "CONNECT")) {
        return parse_connect(rest);
    }
    if (equals_ignoring_case(word, "DISCONNECT")) {
        UserCommand command;
        command.kind = CommandKind::disconnect;
        return command;
    }
    if (equals_ignoring_case(word, "PUBLISH")) {
        return parse_topic_command(CommandKind::publish, rest);
    }
    if (equals_ignoring_case(word, "SUBSCRIBE")) {
        return parse_topic_command(CommandKind::subscribe, rest);
    }
    if (equals_ignoring_case(word, "UNSUBSCRIBE")) {
        return parse_topic_command(CommandKind::unsubscribe, rest);
    }
    return invalid("ERROR: Unknown command '" + std::string{word} + "', to see help enter -h");
}

}  // namespace pubsubx::client
