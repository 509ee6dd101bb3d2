// The one logging path of the project: `INFO: ...` and `ERROR: ...` lines, as the original
// PubSubX prints them, after an RFC 3339 timestamp unless the style says otherwise. Each line is
// handed to the kernel whole with write(2), at once, so a reader of a pipe sees it at once. Logging
// never stops the broker: a line the log cannot take now (a non-blocking pipe that is full, a
// reader that went away) waits in a small buffer or is dropped and counted, and a line is never
// torn by the next one.
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdint>
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

// How a line starts, before its `INFO: ` (docs/operations.md, Logs).
enum class LogStyle {
    plain,        // `INFO: ...`, the original PubSubX lines
    timestamped,  // `2026-11-27T12:03:04.567Z INFO: ...` (RFC 3339, UTC, milliseconds)
    journal,      // `<6>INFO: ...`: systemd's journal adds the time and takes the priority
};

// Where lines go when it is not a descriptor written directly: a log file, written by a
// thread of its own so that a slow disk never stalls the event loop (server/log_file.hpp).
class LogSink {
  public:
    virtual ~LogSink() = default;
    // Takes one whole line without blocking, or drops and counts it.
    virtual void write_line(std::string_view line) = 0;
    virtual std::uint64_t lines_dropped() const = 0;
    // Waits up to `timeout` for what was taken to be written.
    virtual void flush(std::chrono::milliseconds timeout) = 0;
};

// Peer-supplied text (topics, message data) for a log line: `logger.info("... '",
// Escaped{topic}, "'")`. It is rendered so that it cannot forge a line or reach the terminal
// as a control sequence: backslash as `\\`, LF, CR and tab as `\n`, `\r`, `\t`, every other
// control character (C0, DEL, C1) and every byte that is not part of valid UTF-8 as `\xNN`.
// Valid, printable UTF-8 is kept as it is. Costs one scan when there is nothing to escape.
struct Escaped {
    std::string_view text;
};

// Appends `text` to `out` as Escaped renders it.
void append_escaped(std::string& out, std::string_view text);

class Logger {
  public:
    explicit Logger(LogLevel level = LogLevel::info, int fd = STDOUT_FILENO)
        : level_(level), fd_(fd) {}
    // Writes to the descriptor of `out` (bypassing its stdio buffer).
    Logger(LogLevel level, std::FILE* out) : Logger(level, ::fileno(out)) {}

    LogLevel level() const { return level_; }
    void set_level(LogLevel level) { level_ = level; }
    LogStyle style() const { return style_; }
    void set_style(LogStyle style) { style_ = style; }
    // Lines go to `sink` (it must outlive its use) instead of the descriptor; nullptr: back to
    // the descriptor.
    void set_sink(LogSink* sink) { sink_ = sink; }

    bool info_enabled() const { return level_ >= LogLevel::info; }
    bool verbose_enabled() const { return level_ >= LogLevel::verbose; }

    template <typename... Parts>
    void info(const Parts&... parts) {
        if (info_enabled()) {
            write(Severity::info, parts...);
        }
    }
    template <typename... Parts>
    void verbose(const Parts&... parts) {
        if (verbose_enabled()) {
            write(Severity::info, parts...);
        }
    }
    template <typename... Parts>
    void error(const Parts&... parts) {
        write(Severity::error, parts...);
    }
    // Something works but is unsafe or unusual (a setting to fix): printed at every level.
    template <typename... Parts>
    void warning(const Parts&... parts) {
        write(Severity::warning, parts...);
    }
    // Lines that print whatever the level (the start-up line).
    template <typename... Parts>
    void always(const Parts&... parts) {
        write(Severity::info, parts...);
    }

    // Lines the log could not take: its reader was gone, or too slow for the pending buffer.
    std::uint64_t lines_dropped() const {
        return lines_dropped_ + (sink_ != nullptr ? sink_->lines_dropped() : 0);
    }
    // Bytes of whole lines (and at most one line's unwritten tail) waiting for the descriptor.
    std::size_t pending_bytes() const { return pending_.size(); }
    // Waits up to `timeout` for the descriptor to take the pending bytes (at shutdown).
    void flush(std::chrono::milliseconds timeout);

    // A line's unwritten tail and the whole lines queued behind it: at most this many bytes.
    static constexpr std::size_t kMaxPendingBytes = 64 * 1024;

  private:
    enum class Severity { error, warning, info };

    static void append_part(std::string& line, std::string_view part) { line.append(part); }
    static void append_part(std::string& line, char part) { line.push_back(part); }
    static void append_part(std::string& line, Escaped part) { append_escaped(line, part.text); }
    template <typename Number>
    requires std::is_arithmetic_v<Number>
    static void append_part(std::string& line, Number part) { line.append(std::to_string(part)); }

    template <typename... Parts>
    void write(Severity severity, const Parts&... parts) {
        std::string line;
        begin_line(line, severity);
        (append_part(line, parts), ...);
        line.push_back('\n');
        write_line(line);
    }

    // The style's start of a line, then the level: `INFO: `, `WARNING: ` or `ERROR: `.
    void begin_line(std::string& line, Severity severity);
    void append_timestamp(std::string& line);
    void write_line(std::string_view line);
    // Writes as much of pending_ as the descriptor takes now; true when it is all written.
    bool write_pending();
    // Keeps the unwritten tail of a line that was written in part, so that no other line is
    // written into its middle. A tail past the bound is cut and ends with a marker.
    void keep_tail(std::string_view tail);

    LogLevel level_;
    LogStyle style_ = LogStyle::plain;
    int fd_;
    LogSink* sink_ = nullptr;
    // The timestamp up to its seconds, made again only when the second changes.
    std::int64_t stamped_second_ = -1;
    std::string stamp_prefix_;
    std::string pending_;
    std::uint64_t lines_dropped_ = 0;
};

}  // namespace pubsubx
