// --log-file: the log lines go to a file, written by a thread of its own, so that a slow or
// stalled disk never stalls the event loop. The loop hands each line over under a mutex (a
// copy into a buffer, no system call); what the file cannot take in time waits up to a bound
// and beyond it is dropped and counted, as the log pipe's lines are.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "pubsubx/log.hpp"

namespace pubsubx::server {

class LogFile final : public LogSink {
  public:
    // Opens `path` for appending (created 0640); nullptr and `error` when it cannot.
    static std::unique_ptr<LogFile> open(const std::string& path, std::string& error);
    // Waits up to a second for the lines handed over to be written. A writer stuck in a write
    // (a dead NFS server, a FIFO nobody reads) is left behind with what it holds, so that the
    // server can still exit.
    ~LogFile() override;
    LogFile(const LogFile&) = delete;
    LogFile& operator=(const LogFile&) = delete;

    void write_line(std::string_view line) override;
    std::uint64_t lines_dropped() const override;
    void flush(std::chrono::milliseconds timeout) override;

    // SIGHUP, after logrotate moved the file away: opens the path again and writes there
    // from the next batch of lines on. False and `error` when it cannot; the old file is kept.
    bool reopen(std::string& error);
    const std::string& path() const { return path_; }

    // Lines waiting for the writer: at most this many bytes.
    static constexpr std::size_t kMaxPendingBytes = 1024 * 1024;

  private:
    struct Shared;  // what the writer thread and the loop share; the writer owns a reference
    LogFile(std::string path, int fd);
    // The writer thread's loop: it holds `shared` until it ends.
    static void write_until_stopped(const std::shared_ptr<Shared>& shared);

    const std::string path_;
    std::shared_ptr<Shared> shared_;
};

}  // namespace pubsubx::server
