#include "pubsubx/log.hpp"

#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <ctime>

#include "pubsubx/protocol.hpp"

namespace pubsubx {

namespace {

void append_hex_byte(std::string& out, unsigned char byte) {
    constexpr std::string_view kDigits{"0123456789ABCDEF"};
    out.append("\\x");
    out.push_back(kDigits[byte >> 4]);
    out.push_back(kDigits[byte & 0x0f]);
}

void append_escaped_byte(std::string& out, unsigned char byte) {
    switch (byte) {
        case '\\':
            out.append("\\\\");
            break;
        case '\n':
            out.append("\\n");
            break;
        case '\r':
            out.append("\\r");
            break;
        case '\t':
            out.append("\\t");
            break;
        default:
            append_hex_byte(out, byte);
    }
}

// Bytes written, or -1 with errno; retries on EINTR.
ssize_t write_some(int fd, std::string_view bytes) {
    for (;;) {
        const ssize_t written = ::write(fd, bytes.data(), bytes.size());
        if (written >= 0 || errno != EINTR) {
            return written;
        }
    }
}

}  // namespace

void append_escaped(std::string& out, std::string_view text) {
    if (text.find('\\') == std::string_view::npos && is_utf8_without_controls(text)) {
        out.append(text);
        return;
    }
    while (!text.empty()) {
        const std::size_t length = utf8_char_length(text);
        if (length == 0 || text.front() == '\\') {
            append_escaped_byte(out, static_cast<unsigned char>(text.front()));
            text.remove_prefix(1);
        } else {
            out.append(text.substr(0, length));
            text.remove_prefix(length);
        }
    }
}

void Logger::begin_line(std::string& line, Severity severity) {
    switch (style_) {
        case LogStyle::plain:
            break;
        case LogStyle::timestamped:
            append_timestamp(line);
            break;
        case LogStyle::journal:
            // sd-daemon(3)'s priority prefixes: the journal strips them and keeps the priority.
            line.append(severity == Severity::error     ? "<3>"
                        : severity == Severity::warning ? "<4>"
                                                        : "<6>");
            break;
    }
    line.append(severity == Severity::error     ? "ERROR: "
                : severity == Severity::warning ? "WARNING: "
                                                : "INFO: ");
}

void Logger::append_timestamp(std::string& line) {
    timespec now{};
    ::clock_gettime(CLOCK_REALTIME, &now);
    if (now.tv_sec != stamped_second_) {
        std::tm utc{};
        ::gmtime_r(&now.tv_sec, &utc);
        char text[32];
        const std::size_t length = std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S.", &utc);
        stamp_prefix_.assign(text, length);
        stamped_second_ = now.tv_sec;
    }
    const auto millis = static_cast<unsigned>(now.tv_nsec / 1'000'000);
    line.append(stamp_prefix_);
    line.push_back(static_cast<char>('0' + millis / 100));
    line.push_back(static_cast<char>('0' + millis / 10 % 10));
    line.push_back(static_cast<char>('0' + millis % 10));
    line.append("Z ");
}

void Logger::write_line(std::string_view line) {
    if (sink_ != nullptr) {
        sink_->write_line(line);
        return;
    }
    if (!pending_.empty() && !write_pending()) {
        if (pending_.size() + line.size() <= kMaxPendingBytes) {
            pending_.append(line);
        } else {
            ++lines_dropped_;
        }
        return;
    }
    const ssize_t written = write_some(fd_, line);
    if (written == static_cast<ssize_t>(line.size())) {
        return;
    }
    if (written > 0) {
        keep_tail(line.substr(static_cast<std::size_t>(written)));
    } else if ((errno == EAGAIN || errno == EWOULDBLOCK) && line.size() <= kMaxPendingBytes) {
        pending_.assign(line);
    } else {
        ++lines_dropped_;  // EPIPE (the reader is gone), EBADF, ENOSPC, ...
    }
}

bool Logger::write_pending() {
    const ssize_t written = write_some(fd_, pending_);
    if (written >= 0) {
        pending_.erase(0, static_cast<std::size_t>(written));
        return pending_.empty();
    }
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
        // The descriptor will not take these lines: they are lost. A torn line at the head of
        // the buffer still counts as one.
        lines_dropped_ +=
            static_cast<std::uint64_t>(std::count(pending_.begin(), pending_.end(), '\n'));
        pending_.clear();
        return true;
    }
    return false;
}

void Logger::keep_tail(std::string_view tail) {
    if (tail.size() <= kMaxPendingBytes) {
        pending_.assign(tail);
        return;
    }
    constexpr std::string_view kCut{" [line cut: the log is not keeping up]\n"};
    pending_.assign(tail.substr(0, kMaxPendingBytes - kCut.size()));
    pending_.append(kCut);
}

void Logger::flush(std::chrono::milliseconds timeout) {
    if (sink_ != nullptr) {
        sink_->flush(timeout);
    }
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!pending_.empty() && !write_pending()) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            break;
        }
        pollfd ready{fd_, POLLOUT, 0};
        ::poll(&ready, 1, static_cast<int>(left.count()));
    }
}

}  // namespace pubsubx
