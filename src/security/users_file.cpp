#include "users_file.hpp"

#include "password_hash.hpp"
#include "pubsubx/protocol.hpp"

namespace pubsubx::security {

namespace {

constexpr std::string_view kAnonymous{"*"};

// The line's words, split on spaces and tabs.
std::vector<std::string_view> words_of(std::string_view line) {
    std::vector<std::string_view> words;
    std::size_t at = 0;
    while (at < line.size()) {
        const std::size_t start = line.find_first_not_of(" \t", at);
        if (start == std::string_view::npos) {
            break;
        }
        const std::size_t end = std::min(line.find_first_of(" \t", start), line.size());
        words.push_back(line.substr(start, end - start));
        at = end;
    }
    return words;
}

std::string filter_problem(std::string_view filter) {
    if (!is_valid_topic(filter)) {
        return "'" + std::string{filter.substr(0, 64)} + "' is not a valid topic filter";
    }
    if (topic_shape(filter).hash_not_last) {
        return "'" + std::string{filter.substr(0, 64)} + "': '#' may only be the last level";
    }
    return {};
}

// One line into `file`; the reason it is wrong, or empty.
std::string take_line(std::string_view line, UsersFile& file) {
    const std::vector<std::string_view> words = words_of(line);
    if (words.empty() || words.front().starts_with('#')) {
        return {};
    }
    if (words.size() != 3) {
        return "expected 'user NAME HASH', 'publish NAME FILTER' or 'subscribe NAME FILTER'";
    }
    const std::string_view directive = words[0];
    const std::string_view name = words[1];
    if (directive == "user") {
        if (!is_valid_name(name) || name == kAnonymous) {
            return "'" + std::string{name.substr(0, 64)} + "' is not a valid client name";
        }
        if (const auto problem = hash_problem(words[2])) {
            return "the password hash of '" + std::string{name} + "': " + *problem;
        }
        auto [entry, added] = file.users.try_emplace(std::string{name});
        if (!added) {
            return "user '" + std::string{name} + "' is listed twice";
        }
        entry->second.password_hash = std::string{words[2]};
        return {};
    }
    if (directive != "publish" && directive != "subscribe") {
        return "unknown word '" + std::string{directive.substr(0, 32)} + "'";
    }
    if (std::string problem = filter_problem(words[2]); !problem.empty()) {
        return problem;
    }
    Permissions* permissions = &file.anonymous;
    if (name != kAnonymous) {
        const auto user = file.users.find(name);
        if (user == file.users.end()) {
            return "user '" + std::string{name.substr(0, 64)} +
                   "' has no 'user' line before its permissions";
        }
        permissions = &user->second.permissions;
    }
    (directive == "publish" ? permissions->publish : permissions->subscribe).emplace_back(words[2]);
    return {};
}

}  // namespace

std::variant<UsersFile, UsersFileError> parse_users_file(std::string_view text) {
    UsersFile file;
    std::size_t number = 0;
    while (!text.empty()) {
        ++number;
        const std::size_t end = std::min(text.find('\n'), text.size());
        std::string_view line = text.substr(0, end);
        text.remove_prefix(std::min(end + 1, text.size()));
        if (!line.empty() && line.back() == '\r') {
            line.remove_suffix(1);
        }
        if (std::string problem = take_line(line, file); !problem.empty()) {
            return UsersFileError{number, std::move(problem)};
        }
    }
    return file;
}

}  // namespace pubsubx::security
