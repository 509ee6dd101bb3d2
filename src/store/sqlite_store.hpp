// The store's file: one SQLite database in WAL mode (docs/durability.md). Used by one thread
// at a time: the main thread opens and loads it, then the writer thread owns it.
//
// Messages are appended in one global sequence (the table's rowid), with no index: appending
// is what the store does most, and an index on the client would cost half its speed. Dropping
// a client's oldest messages, or all of them at a restore, only moves that client's count of
// dead rows (clients.dropped); the dead rows are deleted in one pass once they outnumber the
// live ones, so the file stays within about twice what memory holds.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "pubsubx/core/persistence.hpp"
#include "store_batch.hpp"

struct sqlite3;
struct sqlite3_stmt;

namespace pubsubx::store {

// A store that cannot be used: the server says why and exits, leaving the file as it was.
class StoreError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

enum class Durability { normal, full };

struct LoadedStore {
    std::vector<RecoveredClient> clients;  // in id order
    std::uint64_t last_client_id = 0;      // every id the file has seen is at most this
    std::size_t messages = 0;
};

class SqliteStore {
  public:
    static constexpr int kSchemaVersion = 1;
    // Dead rows are deleted once there are more of them than live ones, and at least this many.
    static constexpr std::uint64_t kCompactAtLeast = 65'536;

    // Opens (or creates) the database file. Throws StoreError, having written nothing, when the
    // file is not a PubSubX store of a version this server knows, or is corrupt.
    SqliteStore(const std::filesystem::path& file, Durability durability);
    ~SqliteStore();
    SqliteStore(const SqliteStore&) = delete;
    SqliteStore& operator=(const SqliteStore&) = delete;

    // Reads every client and its live messages. Throws StoreError on a corrupt file.
    LoadedStore load();
    // The file was loaded and will be used: sets the journal mode and durability, prepares
    // the statements, and lets closing checkpoint the WAL again. Before it the file is only
    // read (a new or empty one aside). Throws StoreError.
    void accept();

    // Applies the batch in one transaction. False, with the transaction rolled back and
    // error() saying why, when it could not be committed (the disk is full, say).
    bool apply(const StoreBatch& batch);
    // The same for the ops [first, last) only.
    bool apply(const StoreBatch& batch, std::size_t first, std::size_t last);
    // Deletes the dead rows when they are worth a pass; false if that failed (retried later).
    bool compact_if_worthwhile();
    const std::string& error() const { return error_; }
    // Gives back the page cache's unused memory (the writer is idle).
    void release_memory();

    // Messages appended by the batches committed so far.
    std::uint64_t messages_appended() const { return messages_appended_; }
    std::uint64_t live_messages() const { return live_messages_; }
    std::uint64_t dead_messages() const { return dead_messages_; }

  private:
    struct ClientRows {
        std::uint64_t rows = 0;     // its rows in the messages table, live or dead
        std::uint64_t dropped = 0;  // the oldest of them that are dead
        bool dropped_changed = false;
    };

    void exec(const char* sql);
    bool exec_quietly(const char* sql);
    sqlite3_stmt* prepare(const char* sql);
    enum class SchemaFound { empty, current };
    SchemaFound check_schema();
    int table_count();
    void create_schema();
    void configure(Durability durability);
    void require_wal();
    void prepare_statements();
    void apply_op(const StoreBatch& batch, const StoreOp& op);
    void keep_messages(std::uint64_t client, std::string_view frames);
    void write_dropped_counts();
    void recount_from_file();
    void tally_rows();
    bool delete_all_messages();
    void forget_dead_rows();
    void step_done(sqlite3_stmt* statement);
    [[noreturn]] void fail(const std::string& what);
    void close_refused();

    sqlite3* db_ = nullptr;
    std::filesystem::path file_;
    sqlite3_stmt* save_client_ = nullptr;
    sqlite3_stmt* remove_client_ = nullptr;
    sqlite3_stmt* remove_subscriptions_ = nullptr;
    sqlite3_stmt* subscribe_ = nullptr;
    sqlite3_stmt* unsubscribe_ = nullptr;
    sqlite3_stmt* insert_message_ = nullptr;
    sqlite3_stmt* set_dropped_ = nullptr;
    std::unordered_map<std::uint64_t, ClientRows> clients_;
    std::vector<std::uint64_t> dropped_changed_;  // clients whose count moved in this batch
    std::uint64_t orphan_rows_ = 0;               // rows of removed clients
    std::uint64_t live_messages_ = 0;
    std::uint64_t dead_messages_ = 0;
    std::uint64_t last_position_ = 0;  // subscriptions are listed in this order
    std::uint64_t messages_appended_ = 0;
    std::uint64_t appended_in_batch_ = 0;
    std::string error_;
    Durability durability_;
    bool wal_existed_ = false;  // before this server opened the file
    bool shm_existed_ = false;
    bool accepted_ = false;     // loaded and in use: see accept()
    bool counts_known_ = true;  // false while a recount after a failure could not read
};

}  // namespace pubsubx::store
