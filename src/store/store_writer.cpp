#include "store_writer.hpp"

namespace pubsubx::store {

StoreWriter::StoreWriter(std::unique_ptr<SqliteStore> store, std::size_t max_backlog_bytes)
    : store_(std::move(store)), max_backlog_bytes_(max_backlog_bytes) {
    status_.live_messages = store_->live_messages();
    thread_ = std::thread{[this] { run(); }};
}

StoreWriter::~StoreWriter() {
    stop();
}

bool StoreWriter::add(StoreOp::Kind kind, std::uint64_t client, std::uint64_t count,
                      std::string_view text) {
    std::lock_guard lock{mutex_};
    if (pending_.bytes() + held_bytes_ + text.size() > max_backlog_bytes_ || stopping_) {
        return false;
    }
    pending_.add(kind, client, count, text);
    ++added_;
    // Only a writer waiting for work needs waking; later changes join its group.
    if (pending_.ops.size() == 1 || pending_.ops.size() == kGroupOps) {
        wake_.notify_one();
    }
    return true;
}

void StoreWriter::replace_all(StoreBatch&& batch) {
    std::lock_guard lock{mutex_};
    pending_ = std::move(batch);
    pending_.replaces_all = true;
    ++added_;
    wake_.notify_one();
}

bool StoreWriter::idle() const {
    std::lock_guard lock{mutex_};
    return pending_.empty() && !busy_ && held_bytes_ == 0;
}

std::uint64_t StoreWriter::last_added() const {
    std::lock_guard lock{mutex_};
    return added_;
}

void StoreWriter::on_commit(std::function<void()> listener) {
    std::lock_guard lock{mutex_};
    on_commit_ = std::move(listener);
}

// A burst (thousands of CONNECTs, a rewrite) leaves the batch's buffers large: given back
// once the writer has nothing more to do, so that an idle broker holds little.
void StoreWriter::release_if_large(StoreBatch& work) {
    constexpr std::size_t kKeptBytes = 64 * 1024;
    if (work.ops.capacity() * sizeof(StoreOp) + work.arena.capacity() > kKeptBytes) {
        StoreBatch{}.swap(work);
    }
}

void StoreWriter::committed_chunk() {
    std::lock_guard lock{mutex_};
    ++status_.commits;
    status_.messages_written = store_->messages_appended();
    status_.live_messages = store_->live_messages();
}

StoreWriter::Status StoreWriter::status() const {
    std::lock_guard lock{mutex_};
    Status status = status_;
    status.backlog_bytes = pending_.bytes() + held_bytes_;
    return status;
}

std::size_t StoreWriter::stop() {
    {
        std::lock_guard lock{mutex_};
        stopping_ = true;
        wake_.notify_one();
    }
    if (thread_.joinable()) {
        thread_.join();
    }
    std::lock_guard lock{mutex_};
    return unwritten_;
}

void StoreWriter::run() {
    StoreBatch work;  // what the writer commits; kept while commits fail
    std::unique_lock lock{mutex_};
    for (;;) {
        if (status_.failing && !stopping_) {
            wake_.wait_for(lock, kRetryPeriod, [&] { return stopping_ || pending_.replaces_all; });
        } else {
            const auto has_work = [&] { return stopping_ || !pending_.empty(); };
            if (!wake_.wait_for(lock, kReleasePeriod, has_work)) {
                release_memory_if_used(lock);
                wake_.wait(lock, has_work);
            }
            // Group commit: what comes within the window shares this transaction.
            wake_.wait_for(lock, kGroupWindow,
                           [&] { return stopping_ || pending_.ops.size() >= kGroupOps; });
        }
        // Swapped, not copied, unless a failed batch is still held: the event loop waits
        // for this lock.
        if (pending_.replaces_all || work.empty()) {
            std::swap(work, pending_);
        } else {
            work.append(pending_);
        }
        pending_.clear();
        work_last_ = added_;
        held_bytes_ = work.bytes();
        busy_ = true;
        lock.unlock();
        commit(work);
        lock.lock();
        busy_ = false;
        held_bytes_ = work.bytes();
        if (stopping_ && (pending_.empty() || status_.failing)) {
            unwritten_ = work.ops.size() + pending_.ops.size();
            return;
        }
        used_since_release_ = true;
    }
}

// Idle for kReleasePeriod: SQLite's page cache gives back what it holds (the client records
// of every connection that came, say); a busy store keeps its pages.
void StoreWriter::release_memory_if_used(std::unique_lock<std::mutex>& lock) {
    if (!used_since_release_) {
        return;
    }
    used_since_release_ = false;
    lock.unlock();
    store_->release_memory();
    lock.lock();
}

// A rewrite (replaces_all: a wipe, then the whole state) is one transaction, however large:
// cut in two, a crash between them would leave a store with part of the clients.
std::size_t StoreWriter::chunk_end(const StoreBatch& work, std::size_t from) {
    if (work.replaces_all) {
        return work.ops.size();
    }
    std::size_t bytes = 0;
    std::size_t to = from;
    while (to < work.ops.size() && to - from < kCommitOps && bytes < kCommitBytes) {
        bytes += work.ops[to++].length;
    }
    return to;
}

// Runs without the lock: the event loop goes on adding changes meanwhile. The batch is
// committed in chunks; a chunk that fails stays, with what follows, for the retry.
void StoreWriter::commit(StoreBatch& work) {
    for (std::size_t from = 0; from < work.ops.size();) {
        const std::size_t to = chunk_end(work, from);
        if (!store_->apply(work, from, to)) {
            work.drop_front(from);
            std::lock_guard lock{mutex_};
            failing_ = true;
            ++status_.failed_commits;
            status_.failing = true;
            status_.last_error = store_->error();
            status_.live_messages = store_->live_messages();
            return;
        }
        from = to;
        committed_chunk();
    }
    work.clear();
    store_->compact_if_worthwhile();
    release_if_large(work);
    std::unique_lock lock{mutex_};
    failing_ = false;
    status_.failing = false;
    status_.live_messages = store_->live_messages();
    committed_ = work_last_;
    const std::function<void()> listener = on_commit_;
    lock.unlock();
    if (listener) {
        listener();
    }
}

}  // namespace pubsubx::store
