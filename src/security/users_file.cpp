#include "users_file.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>

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

// The file as it is read: rights are shared once the file is whole.
struct Reading {
    UsersFile file;
    std::map<std::string, std::shared_ptr<Rights>, std::less<>> rights;
    std::shared_ptr<Rights> anonymous = std::make_shared<Rights>();
};

// One line into `reading`; the reason it is wrong, or empty.
std::string take_line(std::string_view line, Reading& reading) {
    UsersFile& file = reading.file;
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
        const auto rights = std::make_shared<Rights>();
        entry->second.rights = rights;
        reading.rights.emplace(std::string{name}, rights);
        return {};
    }
    if (directive != "publish" && directive != "subscribe") {
        return "unknown word '" + std::string{directive.substr(0, 32)} + "'";
    }
    if (std::string problem = filter_problem(words[2]); !problem.empty()) {
        return problem;
    }
    Rights* rights = reading.anonymous.get();
    if (name != kAnonymous) {
        const auto user = reading.rights.find(name);
        if (user == reading.rights.end()) {
            return "user '" + std::string{name.substr(0, 64)} +
                   "' has no 'user' line before its permissions";
        }
        rights = user->second.get();
    }
    (directive == "publish" ? rights->publish : rights->subscribe).emplace_back(words[2]);
    return {};
}

}  // namespace

std::variant<UsersFile, UsersFileError> parse_users_file(std::string_view text) {
    Reading reading;
    std::size_t number = 0;
    while (!text.empty()) {
        ++number;
        const std::size_t end = std::min(text.find('\n'), text.size());
        std::string_view line = text.substr(0, end);
        text.remove_prefix(std::min(end + 1, text.size()));
        if (!line.empty() && line.back() == '\r') {
            line.remove_suffix(1);
        }
        if (std::string problem = take_line(line, reading); !problem.empty()) {
            return UsersFileError{number, std::move(problem)};
        }
    }
    reading.file.anonymous = reading.anonymous;
    return std::move(reading.file);
}

std::variant<UsersFile, UsersFileError> read_users_file(const std::string& path) {
    // A directory opens as a stream that reads nothing: it would pass for a file of no users.
    struct stat status {};
    if (::stat(path.c_str(), &status) != 0) {
        return UsersFileError{0, std::string{"cannot read it: "} + std::strerror(errno)};
    }
    if (!S_ISREG(status.st_mode)) {
        return UsersFileError{0, "it is not a regular file"};
    }
    std::ifstream in{path, std::ios::binary};
    if (!in) {
        return UsersFileError{0, std::string{"cannot read it: "} + std::strerror(errno)};
    }
    const std::string text{std::istreambuf_iterator<char>{in}, std::istreambuf_iterator<char>{}};
    if (in.bad() || static_cast<std::size_t>(status.st_size) > text.size()) {
        return UsersFileError{0, "cannot read it whole"};
    }
    return parse_users_file(text);
}

std::string describe(const std::string& path, const UsersFileError& error) {
    return "users file " + path +
           (error.line != 0 ? " line " + std::to_string(error.line) : std::string{}) + ": " +
           error.message;
}

bool readable_by_others(const std::string& path) {
    struct stat status {};
    return ::stat(path.c_str(), &status) == 0 && (status.st_mode & S_IROTH) != 0;
}

}  // namespace pubsubx::security
