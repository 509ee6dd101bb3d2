// The users file (--users, issue 13): who may connect, with which password, and the topic
// filters each may publish to and subscribe to. Parsed without I/O; a broken line is an error
// naming the line, and nothing of a broken file is taken.
//
//   # a comment; blank lines are ignored
//   user alice $scrypt$ln=15,r=8,p=1$<salt>$<hash>     (pubsubx-passwd writes these)
//   publish alice sensors/#
//   subscribe alice chat/+
//   publish * public/#                                 (* : anonymous clients, if allowed)
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <variant>

#include "pubsubx/core/accounts.hpp"

namespace pubsubx::security {

using pubsubx::AccountTable;

// The users file is the core's table of accounts (core/accounts.hpp).
using UsersFile = AccountTable;

struct UsersFileError {
    std::size_t line = 0;  // 1-based
    std::string message;
};

std::variant<UsersFile, UsersFileError> parse_users_file(std::string_view text);
// Reads and parses the file at `path`; a file that cannot be read is an error at line 0.
std::variant<UsersFile, UsersFileError> read_users_file(const std::string& path);
// "users file F line N: reason" (or without the line when it is 0).
std::string describe(const std::string& path, const UsersFileError& error);
// Others than its owner and group may read the file (they could guess its passwords offline).
bool readable_by_others(const std::string& path);

}  // namespace pubsubx::security
