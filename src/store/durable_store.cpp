#include "durable_store.hpp"

#include <algorithm>

#include "pubsubx/protocol.hpp"

namespace pubsubx::store {

namespace {
// A client's record as save_client carries it: the name, then the secret digest if any.
std::uint64_t client_record(const Client& client, std::string& out) {
    out.assign(client.name());
    if (client.credentials() == nullptr) {
        return 0;
    }
    const auto digest = client.credentials()->secret.bytes();
    out.append(reinterpret_cast<const char*>(digest.data()), digest.size());
    return 1;
}

void add_client(StoreBatch& batch, const Client& client, bool with_queue, std::string& scratch) {
    const std::uint64_t has_secret = client_record(client, scratch);
    batch.add(StoreOp::Kind::save_client, client.id(), has_secret, scratch);
    for (const Subscription& subscription : client.subscriptions()) {
        batch.add(StoreOp::Kind::subscribe, client.id(), 0, subscription.topic->name());
    }
    if (with_queue && client.outbound().message_bytes() > 0) {
        batch.add(StoreOp::Kind::keep_messages, client.id(), 0, client.outbound().messages());
    }
}
}  // namespace

std::size_t backlog_bound(const BrokerConfig& config) {
    constexpr std::size_t kLeast = 64 * 1024 * 1024;
    constexpr std::size_t kWithoutCap = 256 * 1024 * 1024;
    return config.max_total_queue_bytes == 0 ? kWithoutCap
                                             : std::max(kLeast, config.max_total_queue_bytes / 4);
}

DurableStore::DurableStore(const StoreOptions& options, Broker& broker, Logger& logger)
    : broker_(broker), logger_(logger), dir_(options.data_dir) {
    const auto started = Clock::now();
    auto file = std::make_unique<SqliteStore>(dir_.database(), options.durability);
    const LoadedStore loaded = file->load();
    file->accept();
    // The retention period counts from when the server accepts connections again, right after.
    const TimePoint now = Clock::now();
    bool as_stored = true;
    for (const RecoveredClient& client : loaded.clients) {
        as_stored = broker.recover(client, now) && as_stored;
    }
    broker.ids_start_after(loaded.last_client_id);
    const double seconds = std::chrono::duration<double>(Clock::now() - started).count();
    logger_.always("Store ", dir_.database().string(), ": loaded ", loaded.clients.size(),
                   " client(s) and ", loaded.messages, " queued message(s) in ",
                   static_cast<long>(seconds * 1000),
                   " ms; every client is lost until it "
                   "reconnects (durability ",
                   options.durability == Durability::full ? "full" : "normal", ")");
    writer_ = std::make_unique<StoreWriter>(std::move(file), options.max_backlog_bytes);
    broker.attach_persistence(this);
    if (!as_stored) {
        // Today's limits kept less than the file holds: the file follows memory.
        logger_.info("Store: rewriting it to match today's limits");
        out_of_sync_ = true;
    }
}

DurableStore::~DurableStore() {
    broker_.attach_persistence(nullptr);
}

bool DurableStore::record(StoreOp::Kind kind, const Client& client, std::uint64_t count,
                          std::string_view text) {
    if (out_of_sync_) {
        return false;
    }
    if (!writer_->add(kind, client.id(), count, text)) {
        fall_behind();
        return false;
    }
    return true;
}

void DurableStore::fall_behind() {
    out_of_sync_ = true;
    logger_.error(
        "Store: the writer is behind (more than its backlog bound waits); serving "
        "from memory, and rewriting the store once it catches up");
}

void DurableStore::client_saved(const Client& client) {
    const std::uint64_t has_secret = client_record(client, save_buffer_);
    record(StoreOp::Kind::save_client, client, has_secret, save_buffer_);
}

void DurableStore::client_removed(const Client& client) {
    record(StoreOp::Kind::remove_client, client);
}

void DurableStore::subscribed(const Client& client, std::string_view topic) {
    record(StoreOp::Kind::subscribe, client, 0, topic);
}

void DurableStore::unsubscribed(const Client& client, std::string_view topic) {
    record(StoreOp::Kind::unsubscribe, client, 0, topic);
}

void DurableStore::messages_kept(const Client& client, std::string_view frames) {
    if (!record(StoreOp::Kind::keep_messages, client, 0, frames)) {
        not_durable_ += count_frames(frames);
    }
}

void DurableStore::oldest_dropped(const Client& client, std::size_t count) {
    record(StoreOp::Kind::drop_oldest, client, count);
}

void DurableStore::queue_handed_over(const Client& client) {
    record(StoreOp::Kind::hand_over_messages, client);
}

StoreBatch DurableStore::snapshot(bool with_connected_queues) const {
    StoreBatch batch;
    std::string scratch;
    batch.add(StoreOp::Kind::wipe, 0);
    broker_.for_each_client([&](const Client& client) {
        add_client(batch, client, with_connected_queues || !client.connected(), scratch);
    });
    return batch;
}

void DurableStore::maintain() {
    const StoreWriter::Status status = writer_->status();
    if (status.failing && !reported_failing_) {
        reported_failing_ = true;
        logger_.error("Store: cannot write (", status.last_error,
                      "); serving from memory and retrying every second");
    } else if (!status.failing && reported_failing_) {
        reported_failing_ = false;
        logger_.always("Store: writing again after ", status.failed_commits,
                       " failed commit(s) in all");
    }
    if (out_of_sync_ && !status.failing && writer_->idle()) {
        writer_->replace_all(snapshot(false));
        out_of_sync_ = false;
        ++rewrites_;
        logger_.always("Store: rewriting it from memory (", broker_.client_count(),
                       " client(s)) in one transaction; ", not_durable_,
                       " message(s) in all were not durable");
    }
}

bool DurableStore::close() {
    broker_.attach_persistence(nullptr);
    broker_.for_each_client([&](const Client& client) {
        if (!out_of_sync_ && client.connected() && client.outbound().message_bytes() > 0 &&
            !writer_->add(StoreOp::Kind::keep_messages, client.id(), 0,
                          client.outbound().messages())) {
            out_of_sync_ = true;
        }
    });
    if (out_of_sync_) {
        writer_->replace_all(snapshot(true));
        out_of_sync_ = false;
    }
    const std::size_t unwritten = writer_->stop();
    const StoreWriter::Status status = writer_->status();
    if (unwritten > 0) {
        logger_.error("Store: ", unwritten, " change(s) could not be written at stop (",
                      status.last_error, ")");
    }
    logger_.always("Store: closed with ", status.live_messages,
                   " queued message(s) for the clients it keeps");
    return unwritten == 0;
}

std::optional<std::uint64_t> DurableStore::hold_point() const {
    if (out_of_sync_ || writer_->failing()) {
        return std::nullopt;
    }
    return writer_->last_added();
}

StoreFigures DurableStore::figures() const {
    const StoreWriter::Status status = writer_->status();
    return {status.messages_written, status.live_messages,  not_durable_,
            status.commits,          status.failed_commits, rewrites_,
            status.backlog_bytes};
}

}  // namespace pubsubx::store
