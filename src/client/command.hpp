// The interactive client's commands, parsed from one typed line. Pure: no I/O.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace pubsubx::client {

enum class CommandKind {
    empty,
    help,
    connect,
    disconnect,
    publish,
    subscribe,
    unsubscribe,
    invalid
};

struct UserCommand {
    CommandKind kind = CommandKind::empty;
    std::string host;  // connect: empty means the default host
    std::uint16_t port = 0;
    std::string name;
    std::string secret;  // connect: the optional session-resume secret
    std::string topic;
    std::string data;   // publish: everything after the topic and one space
    std::string error;  // invalid: the complete `ERROR: ...` line to print
};

// Parses `CONNECT <port> <name>`, `CONNECT <host>:<port> <name>`, `DISCONNECT`,
// `PUBLISH <topic> <data>`, `SUBSCRIBE <topic>`, `UNSUBSCRIBE <topic>` and `-h`, with the
// command word in any case.
UserCommand parse_user_command(std::string_view line);

// A port given on the command line or typed: 1..65535, digits only.
bool parse_port(std::string_view text, std::uint16_t& port);

extern const char* const kHelpText;

}  // namespace pubsubx::client
