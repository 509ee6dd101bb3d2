// The one logging path of the project: `INFO: ...` and `ERROR: ...` lines, as the original
// PubSubX prints them, each written whole and flushed so that a reader of a pipe sees it at once.
#pragma once

#include <cstdio>
#include <string>
#include <string_view>
#include <type_traits>

namespace pubsubx {

enum class LogLevel {
    quiet,    // errors only
    info,     // lifecycle events: connections, subscriptions, losses, drops
    verbose,  // also one line per message
};

class Logger {
  public:
    explicit Logger(LogLevel level = LogLevel::info, std::FILE* out = stdout)
        : level_(level), out_(out) {}

    bool info_enabled() const { return level_ >= LogLevel::info; }
    bool verbose_enabled() const { return level_ >= LogLevel::verbose; }

    template <typename... Parts>
    void info(const Parts&... parts) {
        if (info_enabled()) {
            write("INFO: ", parts...);
        }
    }
    template <typename... Parts>
    void verbose(const Parts&... parts) {
        if (verbose_enabled()) {
            write("INFO: ", parts...);
        }
    }
    template <typename... Parts>
    void error(const Parts&... parts) {
        write("ERROR: ", parts...);
    }
    // Lines that print whatever the level (the start-up line).
    template <typename... Parts>
    void always(const Parts&... parts) {
        write("INFO: ", parts...);
    }

  private:
    static void append_part(std::string& line, std::string_view part) { line.append(part); }
    static void append_part(std::string& line, char part) { line.push_back(part); }
    template <typename Number>
    requires std::is_arithmetic_v<Number>
    static void append_part(std::string& line, Number part) { line.append(std::to_string(part)); }

    template <typename... Parts>
    void write(std::string_view prefix, const Parts&... parts) {
        std::string line{prefix};
        (append_part(line, parts), ...);
        line.push_back('\n');
        std::fwrite(line.data(), 1, line.size(), out_);
        std::fflush(out_);
    }

    LogLevel level_;
    std::FILE* out_;
};

}  // namespace pubsubx
