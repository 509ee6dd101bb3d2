// pubsubx-passwd FILE NAME: adds user NAME to a users file (issue 13's --users), or changes its
// password, as mosquitto_passwd does. The password is read from the terminal without echo,
// twice; from a pipe, one line (for scripts). The file keeps its other lines, is written whole
// to a temporary file and renamed over the old one, and a new file is readable by its owner
// only. Groundwork: the server does not read users files yet.
#include <fcntl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
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

bool write_whole(const std::string& path, const std::string& text, mode_t mode) {
    const std::string temporary = path + ".tmp";
    const int fd = open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) {
        return false;
    }
    bool written = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
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
    mode_t mode = 0600;
    if (std::ifstream in{path}; in) {
        text.assign(std::istreambuf_iterator<char>{in}, std::istreambuf_iterator<char>{});
        struct stat status {};
        if (stat(path.c_str(), &status) == 0) {
            mode = status.st_mode & 07777;
        }
        const auto parsed = parse_users_file(text);
        if (const auto* error = std::get_if<UsersFileError>(&parsed)) {
            std::fprintf(stderr, "pubsubx-passwd: %s, line %zu: %s\n", path.c_str(), error->line,
                         error->message.c_str());
            return 1;
        }
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
    if (!write_whole(path, with_user(text, name, hash_password(password)), mode)) {
        std::fprintf(stderr, "pubsubx-passwd: cannot write %s: %s\n", path.c_str(),
                     std::strerror(errno));
        return 1;
    }
    return 0;
}
