// --log-file: the log lines go to a file, written by a thread of its own, so that a slow or
// stalled disk never stalls the event loop. The loop hands each line over under a mutex (a
// copy into a buffer, no system call); what the file cannot take in time waits up to a bound
// and beyond it is dropped and counted, as the log pipe's lines are.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "pubsubx/log.hpp"

namespace pubsubx::server {

class LogFile final : public LogSink {
  public:
    // Opens `path` for appending (created 0640); nullptr and `error` when it cannot.
    static std::unique_ptr<LogFile> open(const std::string& path, std::string& error);
    ~LogFile() override;
    LogFile(const LogFile&) = delete;
    LogFile& operator=(const LogFile&) = delete;

    void write_line(std::string_view line) override;
    std::uint64_t lines_dropped() const override { return lines_dropped_.load(); }
    void flush(std::chrono::milliseconds timeout) override;

    // SIGHUP, after logrotate moved the file away: opens the path again and writes there
    // from the next line on. False and `error` when it cannot; the old file is then kept.
    bool reopen(std::string& error);
    const std::string& path() const { return path_; }

    // Lines waiting for the writer: at most this many bytes.
    static constexpr std::size_t kMaxPendingBytes = 1024 * 1024;

  private:
    LogFile(std::string path, int fd);
    void run();
    // Writes all of `bytes` to `fd`; false when the file refused them (ENOSPC, EIO, ...).
    static bool write_all(int fd, std::string_view bytes);

    const std::string path_;
    std::mutex mutex_;
    std::condition_variable wake_writer_;
    std::condition_variable written_;
    std::string pending_;          // lines handed over, not yet taken by the writer
    int fd_;                       // the file the writer writes to (the writer's own)
    int next_fd_ = -1;             // reopened, for the writer to take between batches
    bool writing_ = false;         // the writer holds lines it took and has not written
    bool stopping_ = false;
    std::atomic<std::uint64_t> lines_dropped_{0};
    std::thread writer_;
};

}  // namespace pubsubx::server
