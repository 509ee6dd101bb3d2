#include "log_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>
#include <utility>

namespace pubsubx::server {

struct LogFile::Shared {
    std::mutex mutex;
    std::condition_variable wake_writer;
    std::condition_variable written;
    std::string pending;   // lines handed over, not yet taken by the writer
    int fd = -1;           // the file the writer writes to: the writer's own once it runs
    int next_fd = -1;      // reopened, for the writer to take between batches
    bool writing = false;  // the writer holds lines it took and has not written
    bool stopping = false;
    bool stopped = false;
    std::atomic<std::uint64_t> lines_dropped{0};

    ~Shared() {
        for (const int open_fd : {fd, next_fd}) {
            if (open_fd >= 0) {
                ::close(open_fd);
            }
        }
    }
};

namespace {

// At start the open may wait (a FIFO's reader that starts after the server). At SIGHUP it is on
// the event loop and must not: a FIFO nobody reads then fails with ENXIO instead of blocking
// for good. The writes block either way, on the writer's thread.
enum class OpenWait { may_wait, never };

int open_for_appending(const std::string& path, OpenWait wait, std::string& error) {
    const int flags =
        O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | (wait == OpenWait::never ? O_NONBLOCK : 0);
    const int fd = ::open(path.c_str(), flags, 0640);
    if (fd < 0) {
        const int failure = errno;
        struct stat status {};
        const bool fifo = ::stat(path.c_str(), &status) == 0 && S_ISFIFO(status.st_mode);
        error = "cannot open log file " + path + ": " +
                (failure == ENXIO && fifo ? std::string{"a FIFO with no reader"}
                                          : std::string{std::strerror(failure)});
        return fd;
    }
    if (wait == OpenWait::never) {
        ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    }
    return fd;
}

// Writes all of `bytes` to `fd`; false when the file refused them (ENOSPC, EIO, ...).
bool write_all(int fd, std::string_view bytes) {
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

}  // namespace

std::unique_ptr<LogFile> LogFile::open(const std::string& path, std::string& error) {
    const int fd = open_for_appending(path, OpenWait::may_wait, error);
    if (fd < 0) {
        return nullptr;
    }
    return std::unique_ptr<LogFile>{new LogFile{path, fd}};
}

LogFile::LogFile(std::string path, int fd)
    : path_(std::move(path)), shared_(std::make_shared<Shared>()) {
    shared_->fd = fd;
    std::thread{[shared = shared_] { write_until_stopped(shared); }}.detach();
}

LogFile::~LogFile() {
    std::unique_lock lock{shared_->mutex};
    shared_->stopping = true;
    shared_->wake_writer.notify_one();
    shared_->written.wait_for(lock, std::chrono::seconds{1}, [this] { return shared_->stopped; });
}

void LogFile::write_line(std::string_view line) {
    {
        const std::lock_guard lock{shared_->mutex};
        if (shared_->pending.size() + line.size() > kMaxPendingBytes) {
            shared_->lines_dropped.fetch_add(1, std::memory_order_relaxed);
            return;
        }
        shared_->pending.append(line);
    }
    shared_->wake_writer.notify_one();
}

std::uint64_t LogFile::lines_dropped() const {
    return shared_->lines_dropped.load(std::memory_order_relaxed);
}

void LogFile::flush(std::chrono::milliseconds timeout) {
    std::unique_lock lock{shared_->mutex};
    shared_->written.wait_for(lock, timeout,
                              [this] { return shared_->pending.empty() && !shared_->writing; });
}

bool LogFile::reopen(std::string& error) {
    const int fd = open_for_appending(path_, OpenWait::never, error);
    if (fd < 0) {
        return false;
    }
    int unused_fd = -1;
    {
        const std::lock_guard lock{shared_->mutex};
        // The writer may be in a write to the old file: it changes files between batches.
        unused_fd = std::exchange(shared_->next_fd, fd);
    }
    shared_->wake_writer.notify_one();
    if (unused_fd >= 0) {
        ::close(unused_fd);  // two reopens before the writer woke: the first one is unused
    }
    return true;
}

void LogFile::write_until_stopped(const std::shared_ptr<Shared>& shared) {
    std::string batch;
    std::unique_lock lock{shared->mutex};
    for (;;) {
        shared->wake_writer.wait(lock, [&] {
            return shared->stopping || shared->next_fd >= 0 || !shared->pending.empty();
        });
        if (shared->next_fd >= 0) {
            ::close(shared->fd);
            shared->fd = std::exchange(shared->next_fd, -1);
        }
        if (shared->pending.empty()) {
            if (shared->stopping) {
                break;  // with everything written
            }
            continue;
        }
        batch.swap(shared->pending);
        shared->writing = true;
        const int fd = shared->fd;
        lock.unlock();
        if (!write_all(fd, batch)) {
            shared->lines_dropped.fetch_add(
                static_cast<std::uint64_t>(std::count(batch.begin(), batch.end(), '\n')),
                std::memory_order_relaxed);
        }
        batch.clear();
        lock.lock();
        shared->writing = false;
        shared->written.notify_all();
    }
    shared->stopped = true;
    shared->written.notify_all();
}

}  // namespace pubsubx::server
