#include "data_dir.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "sqlite_store.hpp"

namespace pubsubx::store {

namespace {
std::string errno_text() {
    return std::strerror(errno);
}

std::string read_pid(int fd) {
    char text[32] = {};
    const ssize_t got = ::pread(fd, text, sizeof text - 1, 0);
    std::string pid = got > 0 ? std::string(text, static_cast<std::size_t>(got)) : "";
    while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) {
        pid.pop_back();
    }
    return pid.empty() ? "unknown" : pid;
}

// Root may write anywhere whatever the mode bits: only a real attempt tells.
void check_writable(const std::filesystem::path& dir) {
    const std::filesystem::path probe = dir / ".pubsubx-write-test";
    const int fd = ::open(probe.c_str(), O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        throw StoreError("cannot write in --data-dir " + dir.string() + ": " + errno_text());
    }
    ::close(fd);
    ::unlink(probe.c_str());
}
}  // namespace

DataDir::DataDir(std::filesystem::path path) : path_(std::move(path)) {
    std::error_code error;
    // A directory the server makes is its user's alone: the store names its clients.
    if (std::filesystem::create_directories(path_, error)) {
        std::filesystem::permissions(path_, std::filesystem::perms::owner_all, error);
    }
    if (error || !std::filesystem::is_directory(path_)) {
        throw StoreError("cannot use --data-dir " + path_.string() + ": " +
                         (error ? error.message() : "not a directory"));
    }
    check_writable(path_);
    const std::filesystem::path lock = path_ / "pubsubx.lock";
    lock_fd_ = ::open(lock.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600);
    if (lock_fd_ < 0) {
        throw StoreError("cannot open " + lock.string() + ": " + errno_text());
    }
    if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
        const std::string pid = read_pid(lock_fd_);
        ::close(lock_fd_);
        lock_fd_ = -1;
        throw StoreError("--data-dir " + path_.string() +
                         " is in use by another pubsubx-server (pid " + pid + ")");
    }
    const std::string pid = std::to_string(::getpid()) + "\n";
    if (::ftruncate(lock_fd_, 0) != 0 ||
        ::pwrite(lock_fd_, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
        // The lock holds whether or not the pid could be written: only the message suffers.
    }
}

DataDir::~DataDir() {
    if (lock_fd_ >= 0) {
        ::close(lock_fd_);
    }
}

}  // namespace pubsubx::store
