// The store as the event loop sees it (docs/durability.md): it opens and loads the data
// directory at start, hears the core's changes (core/persistence.hpp) and hands them to the
// writer thread, and writes the store anew from memory when the writer could not keep up.
// No call here waits for the disk, except open() and close().
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include "data_dir.hpp"
#include "pubsubx/broker.hpp"
#include "pubsubx/core/persistence.hpp"
#include "pubsubx/durability_gate.hpp"
#include "pubsubx/log.hpp"
#include "pubsubx/store_figures.hpp"
#include "sqlite_store.hpp"
#include "store_writer.hpp"

namespace pubsubx::store {

struct StoreOptions {
    std::filesystem::path data_dir;
    Durability durability = Durability::normal;
    // Changes not yet committed; beyond it the store is written anew once the writer catches
    // up, and the messages meanwhile are counted as not durable. backlog_bound() gives the
    // default for a broker's limits.
    std::size_t max_backlog_bytes = 64 * 1024 * 1024;
};

// A quarter of the global cap (the memory an operator allowed for queues), and at least
// 64 MiB: a burst of a second or two at full speed waits for the writer instead of costing
// a rewrite of the store.
std::size_t backlog_bound(const BrokerConfig& config);

class DurableStore final : public Persistence, public DurabilityGate {
  public:
    // Locks and reads the data directory, and gives the broker every client it kept, as
    // lost. Throws StoreError, having changed nothing on disk, when the store cannot be used.
    DurableStore(const StoreOptions& options, Broker& broker, Logger& logger);
    ~DurableStore();

    // Now and then on the event loop: reports the writer's trouble and recovery (one line
    // each), and writes the store anew once the writer can take it.
    void maintain();
    // At a graceful stop: connected clients' queued messages are kept too (they come back as
    // lost clients), everything is committed, and the writer stops.
    // Returns false if changes could not be written (the server then exits non-zero).
    bool close();

    StoreFigures figures() const override;
    std::optional<std::uint64_t> hold_point() const override;
    bool durable(std::uint64_t change) const override { return writer_->committed(change); }
    // `listener` runs on the writer's thread after each commit.
    void on_commit(std::function<void()> listener) { writer_->on_commit(std::move(listener)); }

    void client_saved(const Client& client) override;
    void client_removed(const Client& client) override;
    void subscribed(const Client& client, std::string_view topic) override;
    void unsubscribed(const Client& client, std::string_view topic) override;
    void messages_kept(const Client& client, std::string_view frames) override;
    void oldest_dropped(const Client& client, std::size_t count) override;
    void queue_handed_over(const Client& client) override;

  private:
    // False if the change was not recorded (the store is out of sync, or fell behind now).
    bool record(StoreOp::Kind kind, const Client& client, std::uint64_t count = 0,
                std::string_view text = {});
    void fall_behind();
    StoreBatch snapshot(bool with_connected_queues) const;

    Broker& broker_;
    Logger& logger_;
    DataDir dir_;
    std::unique_ptr<StoreWriter> writer_;
    bool out_of_sync_ = false;  // changes were refused: the store must be written anew
    bool reported_failing_ = false;
    std::uint64_t not_durable_ = 0;
    std::uint64_t rewrites_ = 0;
    std::string save_buffer_;  // a client's name and secret, reused
};

}  // namespace pubsubx::store
