#include "log_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

namespace pubsubx::server {

namespace {

int open_for_appending(const std::string& path, std::string& error) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) {
        error = "cannot open log file " + path + ": " + std::strerror(errno);
    }
    return fd;
}

std::uint64_t count_lines(std::string_view bytes) {
    return static_cast<std::uint64_t>(std::count(bytes.begin(), bytes.end(), '\n'));
}

}  // namespace

std::unique_ptr<LogFile> LogFile::open(const std::string& path, std::string& error) {
    const int fd = open_for_appending(path, error);
    if (fd < 0) {
        return nullptr;
    }
    return std::unique_ptr<LogFile>{new LogFile{path, fd}};
}

LogFile::LogFile(std::string path, int fd) : path_(std::move(path)), fd_(fd) {
    writer_ = std::thread{[this] { run(); }};
}

LogFile::~LogFile() {
    {
        const std::lock_guard lock{mutex_};
        stopping_ = true;
    }
    wake_writer_.notify_one();
    writer_.join();
    ::close(fd_);
    if (next_fd_ >= 0) {
        ::close(next_fd_);
    }
}

void LogFile::write_line(std::string_view line) {
    {
        const std::lock_guard lock{mutex_};
        if (pending_.size() + line.size() > kMaxPendingBytes) {
            lines_dropped_.fetch_add(1, std::memory_order_relaxed);
            return;
        }
        pending_.append(line);
    }
    wake_writer_.notify_one();
}

void LogFile::flush(std::chrono::milliseconds timeout) {
    std::unique_lock lock{mutex_};
    written_.wait_for(lock, timeout, [this] { return pending_.empty() && !writing_; });
}

bool LogFile::reopen(std::string& error) {
    const int fd = open_for_appending(path_, error);
    if (fd < 0) {
        return false;
    }
    int unused_fd = -1;
    {
        const std::lock_guard lock{mutex_};
        // The writer may be in a write to the old file: it changes files between batches.
        unused_fd = std::exchange(next_fd_, fd);
    }
    wake_writer_.notify_one();
    if (unused_fd >= 0) {
        ::close(unused_fd);  // two reopens before the writer woke: the first one is unused
    }
    return true;
}

void LogFile::run() {
    std::string batch;
    std::unique_lock lock{mutex_};
    for (;;) {
        wake_writer_.wait(lock,
                          [this] { return stopping_ || next_fd_ >= 0 || !pending_.empty(); });
        if (next_fd_ >= 0) {
            ::close(fd_);
            fd_ = std::exchange(next_fd_, -1);
        }
        if (pending_.empty()) {
            if (stopping_) {
                return;  // with everything written
            }
            continue;
        }
        batch.swap(pending_);
        writing_ = true;
        lock.unlock();
        if (!write_all(fd_, batch)) {
            lines_dropped_.fetch_add(count_lines(batch), std::memory_order_relaxed);
        }
        batch.clear();
        lock.lock();
        writing_ = false;
        written_.notify_all();
    }
}

bool LogFile::write_all(int fd, std::string_view bytes) {
    while (!bytes.empty()) {
        const ssize_t written = ::write(fd, bytes.data(), bytes.size());
        if (written < 0 && errno == EINTR) {
            continue;
        }
        if (written <= 0) {
            return false;
        }
        bytes.remove_prefix(static_cast<std::size_t>(written));
    }
    return true;
}

}  // namespace pubsubx::server
