// pubsubx-passwd FILE NAME: adds user NAME to a users file (issue 13's --users), or changes its
// password, as mosquitto_passwd does. The password is read from the terminal without echo,
// twice; from a pipe, one line (for scripts). The file keeps its other lines, is written whole
// to a temporary file and renamed over the old one, and a new file is readable by its owner
// only; an existing one keeps its mode, owner and group (pubsubx-server re-reads it on SIGHUP).
#include <fcntl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <optional>
#include <sstream>
#include <string>
#include <variant>

#include "pubsubx/protocol.hpp"
#include "security/password_hash.hpp"
#include "security/users_file.hpp"

namespace {

using namespace pubsubx::security;

// Reads a line without echoing it when stdin is a terminal.
bool read_password(const char* prompt, std::string& out) {
    const bool terminal = isatty(STDIN_FILENO) == 1;
    termios saved{};
    if (terminal) {
        std::fprintf(stderr, "%s", prompt);
        tcgetattr(STDIN_FILENO, &saved);
        termios quiet = saved;
        quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
        tcsetattr(STDIN_FILENO, TCSANOW, &quiet);
    }
    const bool got = static_cast<bool>(std::getline(std::cin, out));
    if (terminal) {
        tcsetattr(STDIN_FILENO, TCSANOW, &saved);
        std::fprintf(stderr, "\n");
    }
    return got;
}

// The file's text with NAME's user line set to `hash` (replaced, or appended).
std::string with_user(const std::string& text, const std::string& name, const std::string& hash) {
    std::istringstream lines{text};
    std::string out;
    std::string line;
    bool replaced = false;
    while (std::getline(lines, line)) {
        std::istringstream words{line};
        std::string directive;
        std::string who;
        words >> directive >> who;
        if (directive == "user" && who == name) {
            line = "user " + name + " " + hash;
            replaced = true;
        }
        out += line + "\n";
    }
    if (!replaced) {
        out += "user " + name + " " + hash + "\n";
    }
    return out;
}

// What the file was before this run, so that root editing the server's file does not take it
// away from the server's user.
struct Ownership {
    mode_t mode = 0600;
    std::optional<uid_t> owner;
    std::optional<gid_t> group;
};

// A temporary file of a fresh name beside `path` (never one an attacker placed there), its
// mode and owner set before the text goes in, then renamed over `path`.
bool write_whole(const std::string& path, const std::string& text, const Ownership& ownership) {
    std::string temporary = path + ".XXXXXX";
    const int fd = mkostemp(temporary.data(), O_CLOEXEC);
    if (fd < 0) {
        return false;
    }
    bool written = fchmod(fd, ownership.mode) == 0;
    if (ownership.owner && (*ownership.owner != geteuid() || *ownership.group != getegid())) {
        written = fchown(fd, *ownership.owner, *ownership.group) == 0 && written;
    }
    written = written && write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    written = fsync(fd) == 0 && written;
    written = close(fd) == 0 && written;
    if (!written || rename(temporary.c_str(), path.c_str()) != 0) {
        unlink(temporary.c_str());
        return false;
    }
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: pubsubx-passwd FILE NAME\n");
        return 2;
    }
    const std::string path = argv[1];
    const std::string name = argv[2];
    if (!pubsubx::is_valid_name(name) || name == "*") {
        std::fprintf(stderr, "pubsubx-passwd: '%s' is not a valid client name\n", name.c_str());
        return 2;
    }
    std::string text;
    Ownership ownership;
    struct stat status {};
    if (stat(path.c_str(), &status) == 0) {
        // Only a file that is not there yet may start empty: one that cannot be read must
        // not be replaced by a file of one user.
        std::ifstream in{path};
        if (!S_ISREG(status.st_mode) || !in) {
            std::fprintf(stderr, "pubsubx-passwd: cannot read %s: %s\n", path.c_str(),
                         S_ISREG(status.st_mode) ? std::strerror(errno) : "not a regular file");
            return 1;
        }
        text.assign(std::istreambuf_iterator<char>{in}, std::istreambuf_iterator<char>{});
        ownership = {status.st_mode & 07777, status.st_uid, status.st_gid};
        const auto parsed = parse_users_file(text);
        if (const auto* error = std::get_if<UsersFileError>(&parsed)) {
            std::fprintf(stderr, "pubsubx-passwd: %s, line %zu: %s\n", path.c_str(), error->line,
                         error->message.c_str());
            return 1;
        }
    } else if (errno != ENOENT) {
        std::fprintf(stderr, "pubsubx-passwd: cannot read %s: %s\n", path.c_str(),
                     std::strerror(errno));
        return 1;
    }
    std::string password;
    if (!read_password("Password: ", password) || password.empty()) {
        std::fprintf(stderr, "pubsubx-passwd: no password given\n");
        return 1;
    }
    // The password travels as the CONNECT secret: one word of printable text.
    if (!pubsubx::is_valid_secret(password)) {
        std::fprintf(stderr,
                     "pubsubx-passwd: a password is 1 to 128 bytes, without spaces or control "
                     "characters (it travels as CONNECT <name> <password>)\n");
        return 1;
    }
    if (isatty(STDIN_FILENO) == 1) {
        std::string again;
        if (!read_password("Password again: ", again) || again != password) {
            std::fprintf(stderr, "pubsubx-passwd: the passwords differ\n");
            return 1;
        }
    }
    if (!write_whole(path, with_user(text, name, hash_password(password)), ownership)) {
        std::fprintf(stderr, "pubsubx-passwd: cannot write %s: %s\n", path.c_str(),
                     std::strerror(errno));
        return 1;
    }
    return 0;
}
