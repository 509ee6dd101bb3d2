// The store's writer thread: it alone touches the SQLite file once the server runs. The event
// loop adds changes to a bounded pending batch under a short lock and never waits for the
// disk; the writer commits what gathered every few milliseconds, in one transaction (group
// commit). A commit that fails (disk full) is kept and retried every second; meanwhile the
// pending batch grows until the bound refuses more, and the event loop then writes the
// store anew from memory once the writer has caught up (DurableStore).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "sqlite_store.hpp"
#include "store_batch.hpp"

namespace pubsubx::store {

class StoreWriter {
  public:
    // Changes wait at most this long for more to share their commit.
    static constexpr auto kGroupWindow = std::chrono::milliseconds{2};
    // A commit starts at once when this many changes wait.
    static constexpr std::size_t kGroupOps = 16'384;
    static constexpr auto kRetryPeriod = std::chrono::seconds{1};
    static constexpr auto kReleasePeriod = std::chrono::seconds{1};
    // A transaction takes at most this much: a writer that is behind still commits every few
    // milliseconds (about 10,000 small messages), so a crash loses little of its backlog.
    static constexpr std::size_t kCommitOps = 4096;
    static constexpr std::size_t kCommitBytes = 256 * 1024;

    struct Status {
        std::uint64_t messages_written = 0;  // appended by committed transactions
        std::uint64_t commits = 0;
        std::uint64_t failed_commits = 0;
        std::uint64_t live_messages = 0;  // in the file, for lost clients
        std::size_t backlog_bytes = 0;    // changes not yet committed
        bool failing = false;             // the last commit failed; retrying
        std::string last_error;
    };

    StoreWriter(std::unique_ptr<SqliteStore> store, std::size_t max_backlog_bytes);
    ~StoreWriter();
    StoreWriter(const StoreWriter&) = delete;
    StoreWriter& operator=(const StoreWriter&) = delete;

    // Adds one change; false (and nothing added) if the backlog is at its bound.
    bool add(StoreOp::Kind kind, std::uint64_t client, std::uint64_t count = 0,
             std::string_view text = {});
    // Replaces everything not yet committed with `batch` (replaces_all set by the caller).
    void replace_all(StoreBatch&& batch);
    // Nothing is waiting or being retried.
    bool idle() const;
    // Changes are numbered from 1 in the order they were added (a replace_all is one).
    std::uint64_t last_added() const;
    bool committed(std::uint64_t change) const { return committed_.load() >= change; }
    bool failing() const { return failing_.load(); }
    // Called on the writer's thread after each commit.
    void on_commit(std::function<void()> listener);
    Status status() const;
    // Commits what is pending (one last try if commits are failing) and stops the thread.
    // Returns the changes that could not be written.
    std::size_t stop();

  private:
    void run();
    void commit(StoreBatch& work);
    static std::size_t chunk_end(const StoreBatch& work, std::size_t from);
    void committed_chunk();
    static void release_if_large(StoreBatch& work);
    void release_memory_if_used(std::unique_lock<std::mutex>& lock);

    std::unique_ptr<SqliteStore> store_;
    const std::size_t max_backlog_bytes_;
    mutable std::mutex mutex_;
    std::condition_variable wake_;
    StoreBatch pending_;           // guarded by mutex_
    std::size_t held_bytes_ = 0;   // the batch the writer works on; guarded by mutex_
    bool busy_ = false;            // guarded by mutex_
    bool stopping_ = false;        // guarded by mutex_
    std::size_t unwritten_ = 0;    // guarded by mutex_, set when the thread ends
    std::uint64_t added_ = 0;      // guarded by mutex_: the number of the last change added
    std::uint64_t work_last_ = 0;  // the writer's: the last change in the batch it works on
    std::atomic<std::uint64_t> committed_{0};
    std::atomic<bool> failing_{false};
    std::function<void()> on_commit_;  // guarded by mutex_
    bool used_since_release_ = false;  // the writer's
    Status status_;                    // guarded by mutex_
    std::thread thread_;
};

}  // namespace pubsubx::store
