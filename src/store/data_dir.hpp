// The --data-dir directory: made if missing, checked writable, and locked for this process
// (a lock file holding our pid), so that a second server on the same directory stops at
// start instead of sharing the store.
#pragma once

#include <filesystem>

namespace pubsubx::store {

class DataDir {
  public:
    // Throws StoreError (sqlite_store.hpp) when the directory cannot be used.
    explicit DataDir(std::filesystem::path path);
    ~DataDir();
    DataDir(const DataDir&) = delete;
    DataDir& operator=(const DataDir&) = delete;

    const std::filesystem::path& path() const { return path_; }
    std::filesystem::path database() const { return path_ / "pubsubx.db"; }

  private:
    std::filesystem::path path_;
    int lock_fd_ = -1;
};

}  // namespace pubsubx::store
