// The users file (--users, issue 13): who may connect, with which password, and the topic
// filters each may publish to and subscribe to. Parsed without I/O; a broken line is an error
// naming the line, and nothing of a broken file is taken. Groundwork: not used by the server yet.
//
//   # a comment; blank lines are ignored
//   user alice $scrypt$ln=15,r=8,p=1$<salt>$<hash>     (pubsubx-passwd writes these)
//   publish alice sensors/#
//   subscribe alice chat/+
//   publish * public/#                                 (* : anonymous clients, if allowed)
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace pubsubx::security {

struct Permissions {
    std::vector<std::string> publish;  // filters (MQTT-style: +, trailing #)
    std::vector<std::string> subscribe;
};

struct UserEntry {
    std::string password_hash;  // password_hash.hpp's format
    Permissions permissions;
};

struct UsersFile {
    std::map<std::string, UserEntry, std::less<>> users;
    Permissions anonymous;
};

struct UsersFileError {
    std::size_t line = 0;  // 1-based
    std::string message;
};

std::variant<UsersFile, UsersFileError> parse_users_file(std::string_view text);

}  // namespace pubsubx::security
