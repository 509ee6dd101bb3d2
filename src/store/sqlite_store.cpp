#include "sqlite_store.hpp"

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <memory>

#include "pubsubx/protocol.hpp"

namespace pubsubx::store {

namespace {
// An SQLite failure inside a batch: apply() rolls back and reports it.
struct BatchFailed {
    std::string what;
};

std::string_view column_text(sqlite3_stmt* statement, int column) {
    const void* data = sqlite3_column_blob(statement, column);
    const int size = sqlite3_column_bytes(statement, column);
    return data == nullptr
               ? std::string_view{}
               : std::string_view{static_cast<const char*>(data), static_cast<std::size_t>(size)};
}

void bind_text(sqlite3_stmt* statement, int index, std::string_view text) {
    // A blob, so that names and topics come back byte for byte whatever their encoding.
    sqlite3_bind_blob64(statement, index, text.data(), text.size(), SQLITE_STATIC);
}

std::uint64_t column_u64(sqlite3_stmt* statement, int column) {
    return static_cast<std::uint64_t>(sqlite3_column_int64(statement, column));
}

constexpr const char* kSchema = R"sql(
CREATE TABLE clients(
    id INTEGER PRIMARY KEY,
    name BLOB NOT NULL UNIQUE,
    secret BLOB,                      -- salt and SHA-256(salt, secret), never the secret
    dropped INTEGER NOT NULL DEFAULT 0 -- its oldest rows in messages that are dead
);
CREATE TABLE subscriptions(
    client INTEGER NOT NULL,
    topic BLOB NOT NULL,
    position INTEGER NOT NULL,        -- subscription order
    PRIMARY KEY(client, topic)
) WITHOUT ROWID;
CREATE TABLE messages(
    seq INTEGER PRIMARY KEY,          -- one global sequence: appends only
    client INTEGER NOT NULL,
    frame BLOB NOT NULL               -- the encoded frame, as queued for the client
);
)sql";
}  // namespace

SqliteStore::SqliteStore(const std::filesystem::path& file, Durability durability)
    : file_(file), durability_(durability) {
    std::error_code ignored;
    const bool existed = std::filesystem::file_size(file, ignored) > 0 && !ignored;
    // A side file that cannot even be examined counts as there: it is never removed, and
    // SQLite reports what is wrong with it.
    const auto present = [](const std::filesystem::path& path) {
        std::error_code error;
        return std::filesystem::exists(path, error) || error;
    };
    wal_existed_ = present(file.string() + "-wal");
    shm_existed_ = present(file.string() + "-shm");
    if (!std::filesystem::exists(file, ignored)) {
        // Made here, readable by this user only; SQLite gives its WAL the same mode.
        const int fd = ::open(file.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
        if (fd >= 0) {
            ::close(fd);
        }
    }
    const int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(file.c_str(), &db_, flags, nullptr) != SQLITE_OK) {
        const std::string why = db_ != nullptr ? sqlite3_errmsg(db_) : "out of memory";
        sqlite3_close(db_);
        db_ = nullptr;
        throw StoreError("cannot open " + file.string() + ": " + why);
    }
    try {
        sqlite3_extended_result_codes(db_, 1);
        // A refused file must stay as it was: closing would otherwise checkpoint its WAL into
        // it. accept() allows it again.
        sqlite3_db_config(db_, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
        sqlite3_busy_timeout(db_, 0);
        if (sqlite3_db_readonly(db_, "main") == 1) {
            throw StoreError("cannot write " + file.string() +
                             " (read-only: check its owner and mode)");
        }
        // Reads only: a file that is not ours is never written. An empty database (a first
        // start that crashed before its first commit) has nothing to lose.
        if (!existed || check_schema() == SchemaFound::empty) {
            create_schema();
        }
    } catch (...) {
        close_refused();
        throw;
    }
}

// A refused file is left as it was found: SQLite's side files that this server made (an empty
// WAL and its index) go too. The directory lock keeps every other server away meanwhile.
void SqliteStore::close_refused() {
    sqlite3_close_v2(db_);
    db_ = nullptr;
    std::error_code ignored;
    const std::filesystem::path wal = file_.string() + "-wal";
    if (!wal_existed_ && std::filesystem::file_size(wal, ignored) == 0 && !ignored) {
        std::filesystem::remove(wal, ignored);
    }
    if (!shm_existed_) {
        std::filesystem::remove(file_.string() + "-shm", ignored);
    }
}

SqliteStore::~SqliteStore() {
    for (sqlite3_stmt* statement : {save_client_, remove_client_, remove_subscriptions_, subscribe_,
                                    unsubscribe_, insert_message_, set_dropped_}) {
        sqlite3_finalize(statement);
    }
    if (accepted_) {
        sqlite3_close_v2(db_);
    } else {
        close_refused();
    }
}

void SqliteStore::fail(const std::string& what) {
    throw StoreError(file_.string() + ": " + what + ": " + sqlite3_errmsg(db_));
}

void SqliteStore::exec(const char* sql) {
    char* message = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &message) != SQLITE_OK) {
        const std::string why = message != nullptr ? message : sqlite3_errmsg(db_);
        sqlite3_free(message);
        throw BatchFailed{why};
    }
}

bool SqliteStore::exec_quietly(const char* sql) {
    return sqlite3_exec(db_, sql, nullptr, nullptr, nullptr) == SQLITE_OK;
}

sqlite3_stmt* SqliteStore::prepare(const char* sql) {
    sqlite3_stmt* statement = nullptr;
    if (sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &statement, nullptr) !=
        SQLITE_OK) {
        fail(std::string{"cannot prepare '"} + sql + "'");
    }
    return statement;
}

SqliteStore::SchemaFound SqliteStore::check_schema() {
    sqlite3_stmt* statement = nullptr;
    if (sqlite3_prepare_v2(db_, "PRAGMA user_version", -1, &statement, nullptr) != SQLITE_OK ||
        sqlite3_step(statement) != SQLITE_ROW) {
        sqlite3_finalize(statement);
        fail("not a readable SQLite database");
    }
    const int version = sqlite3_column_int(statement, 0);
    sqlite3_finalize(statement);
    if (version > kSchemaVersion) {
        throw StoreError(file_.string() + ": the store's schema version is " +
                         std::to_string(version) + ", newer than this server's (" +
                         std::to_string(kSchemaVersion) +
                         "); use the newer server, or another --data-dir");
    }
    if (version == 0 && table_count() == 0) {
        return SchemaFound::empty;
    }
    if (version != kSchemaVersion) {
        throw StoreError(file_.string() + ": not a PubSubX store (schema version " +
                         std::to_string(version) +
                         "); it is left untouched: use another --data-dir");
    }
    return SchemaFound::current;
}

int SqliteStore::table_count() {
    sqlite3_stmt* statement = nullptr;
    if (sqlite3_prepare_v2(db_, "SELECT count(*) FROM sqlite_schema", -1, &statement, nullptr) !=
            SQLITE_OK ||
        sqlite3_step(statement) != SQLITE_ROW) {
        sqlite3_finalize(statement);
        fail("not a readable SQLite database");
    }
    const int count = sqlite3_column_int(statement, 0);
    sqlite3_finalize(statement);
    return count;
}

void SqliteStore::create_schema() {
    try {
        // Before the first table: incremental vacuum gives back the space of deleted rows.
        exec("PRAGMA auto_vacuum = INCREMENTAL");
        exec("BEGIN");
        exec(kSchema);
        exec(("PRAGMA user_version = " + std::to_string(kSchemaVersion)).c_str());
        exec("COMMIT");
    } catch (const BatchFailed& failure) {
        throw StoreError("cannot create " + file_.string() + ": " + failure.what);
    }
}

// SQLite stays in its old journal mode when WAL cannot be had (its -wal file cannot be made,
// say): the design's guarantees hold only in WAL mode.
void SqliteStore::require_wal() {
    sqlite3_stmt* statement = nullptr;
    std::string mode;
    if (sqlite3_prepare_v2(db_, "PRAGMA journal_mode = WAL", -1, &statement, nullptr) ==
            SQLITE_OK &&
        sqlite3_step(statement) == SQLITE_ROW) {
        mode = std::string{column_text(statement, 0)};
    }
    sqlite3_finalize(statement);
    if (mode != "wal") {
        fail("cannot use write-ahead logging (journal mode '" + mode + "'); check " +
             file_.string() + "-wal");
    }
}

void SqliteStore::configure(Durability durability) {
    try {
        require_wal();
        exec(durability == Durability::full ? "PRAGMA synchronous = FULL"
                                            : "PRAGMA synchronous = NORMAL");
        exec("PRAGMA cache_size = -256");              // KiB: appends touch few pages
        exec("PRAGMA journal_size_limit = 16777216");  // the WAL shrinks back after a burst
        exec("PRAGMA temp_store = MEMORY");
        // Checkpoints (each with its syncs) every 32 MiB of WAL rather than 4: the writer
        // commits every few milliseconds while it is behind.
        exec("PRAGMA wal_autocheckpoint = 8192");
    } catch (const BatchFailed& failure) {
        throw StoreError(file_.string() + ": " + failure.what);
    }
}

void SqliteStore::prepare_statements() {
    save_client_ = prepare(
        "INSERT INTO clients(id, name, secret) VALUES(?1, ?2, ?3) "
        "ON CONFLICT(id) DO UPDATE SET secret = excluded.secret");
    remove_client_ = prepare("DELETE FROM clients WHERE id = ?1");
    remove_subscriptions_ = prepare("DELETE FROM subscriptions WHERE client = ?1");
    subscribe_ =
        prepare("INSERT OR REPLACE INTO subscriptions(client, topic, position) VALUES(?1, ?2, ?3)");
    unsubscribe_ = prepare("DELETE FROM subscriptions WHERE client = ?1 AND topic = ?2");
    insert_message_ = prepare("INSERT INTO messages(client, frame) VALUES(?1, ?2)");
    set_dropped_ = prepare("UPDATE clients SET dropped = ?2 WHERE id = ?1");
}

void SqliteStore::release_memory() {
    sqlite3_db_release_memory(db_);
}

// Everything that writes waits until the file was read whole: a file refused while loading
// (a damaged row) is left as it was, even its journal mode.
void SqliteStore::accept() {
    configure(durability_);
    prepare_statements();
    accepted_ = true;
    sqlite3_db_config(db_, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 0, nullptr);
}

LoadedStore SqliteStore::load() {
    LoadedStore loaded;
    std::map<std::uint64_t, std::size_t> index;  // id -> position in loaded.clients
    const auto step_all = [&](const char* sql, auto&& on_row) {
        sqlite3_stmt* statement = nullptr;
        if (sqlite3_prepare_v2(db_, sql, -1, &statement, nullptr) != SQLITE_OK) {
            fail("cannot read the store");
        }
        // Finalized however the loop ends: a statement left open keeps SQLite's connection
        // (and its memory) alive past its close.
        const std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> owned{statement,
                                                                          sqlite3_finalize};
        int status;
        while ((status = sqlite3_step(statement)) == SQLITE_ROW) {
            on_row(statement);
        }
        if (status != SQLITE_DONE) {
            fail("cannot read the store");
        }
    };
    step_all("SELECT id, name, secret, dropped FROM clients ORDER BY id", [&](sqlite3_stmt* row) {
        RecoveredClient client;
        client.id = column_u64(row, 0);
        client.name = std::string{column_text(row, 1)};
        if (sqlite3_column_type(row, 2) != SQLITE_NULL) {
            client.secret = SecretDigest::from_bytes(column_text(row, 2));
            if (!client.secret) {
                throw StoreError(file_.string() + ": the secret of client '" + client.name +
                                 "' is damaged");
            }
        }
        index.emplace(client.id, loaded.clients.size());
        clients_[client.id].dropped = column_u64(row, 3);
        loaded.last_client_id = std::max(loaded.last_client_id, client.id);
        loaded.clients.push_back(std::move(client));
    });
    step_all("SELECT client, topic, position FROM subscriptions ORDER BY position",
             [&](sqlite3_stmt* row) {
                 const auto found = index.find(column_u64(row, 0));
                 if (found != index.end()) {
                     loaded.clients[found->second].subscriptions.emplace_back(column_text(row, 1));
                 }
                 last_position_ = std::max(last_position_, column_u64(row, 2));
             });
    // In sequence order: each client's messages come in the order they were queued.
    step_all("SELECT client, frame FROM messages ORDER BY seq", [&](sqlite3_stmt* row) {
        const std::uint64_t id = column_u64(row, 0);
        loaded.last_client_id = std::max(loaded.last_client_id, id);
        const auto found = index.find(id);
        if (found == index.end()) {
            ++orphan_rows_;
            return;
        }
        ClientRows& rows = clients_[id];
        if (rows.rows++ < rows.dropped) {
            return;
        }
        loaded.clients[found->second].frames.append(column_text(row, 1));
        ++loaded.messages;
    });
    tally_rows();
    // Only clients with rows need counting: an idle client costs the writer nothing.
    std::erase_if(clients_, [](const auto& entry) { return entry.second.rows == 0; });
    return loaded;
}

void SqliteStore::step_done(sqlite3_stmt* statement) {
    const int status = sqlite3_step(statement);
    sqlite3_reset(statement);
    sqlite3_clear_bindings(statement);
    if (status != SQLITE_DONE) {
        throw BatchFailed{sqlite3_errmsg(db_)};
    }
}

bool SqliteStore::apply(const StoreBatch& batch) {
    return apply(batch, 0, batch.ops.size());
}

bool SqliteStore::apply(const StoreBatch& batch, std::size_t first, std::size_t last) {
    appended_in_batch_ = 0;
    try {
        exec("BEGIN");
        for (std::size_t i = first; i < last; ++i) {
            apply_op(batch, batch.ops[i]);
        }
        write_dropped_counts();
        exec("COMMIT");
        messages_appended_ += appended_in_batch_;
        return true;
    } catch (const BatchFailed& failure) {
        error_ = failure.what;
        exec_quietly("ROLLBACK");
        dropped_changed_.clear();
        recount_from_file();
        return false;
    }
}

void SqliteStore::apply_op(const StoreBatch& batch, const StoreOp& op) {
    const std::string_view text = batch.text(op);
    const auto sqlite_id = static_cast<sqlite3_int64>(op.client);
    switch (op.kind) {
        case StoreOp::Kind::wipe:
            exec("DELETE FROM messages; DELETE FROM subscriptions; DELETE FROM clients;");
            clients_.clear();
            orphan_rows_ = 0;
            live_messages_ = 0;
            dead_messages_ = 0;
            break;
        case StoreOp::Kind::save_client: {
            const std::size_t name_length =
                op.count == 1 ? text.size() - SecretDigest::kBytes : text.size();
            sqlite3_bind_int64(save_client_, 1, sqlite_id);
            bind_text(save_client_, 2, text.substr(0, name_length));
            if (op.count == 1) {
                bind_text(save_client_, 3, text.substr(name_length));
            } else {
                sqlite3_bind_null(save_client_, 3);
            }
            step_done(save_client_);
            break;
        }
        case StoreOp::Kind::remove_client: {
            sqlite3_bind_int64(remove_client_, 1, sqlite_id);
            step_done(remove_client_);
            sqlite3_bind_int64(remove_subscriptions_, 1, sqlite_id);
            step_done(remove_subscriptions_);
            const auto found = clients_.find(op.client);
            if (found != clients_.end()) {
                live_messages_ -= found->second.rows - found->second.dropped;
                dead_messages_ += found->second.rows - found->second.dropped;
                orphan_rows_ += found->second.rows;
                clients_.erase(found);
            }
            break;
        }
        case StoreOp::Kind::subscribe:
            sqlite3_bind_int64(subscribe_, 1, sqlite_id);
            bind_text(subscribe_, 2, text);
            sqlite3_bind_int64(subscribe_, 3, static_cast<sqlite3_int64>(++last_position_));
            step_done(subscribe_);
            break;
        case StoreOp::Kind::unsubscribe:
            sqlite3_bind_int64(unsubscribe_, 1, sqlite_id);
            bind_text(unsubscribe_, 2, text);
            step_done(unsubscribe_);
            break;
        case StoreOp::Kind::keep_messages:
            keep_messages(op.client, text);
            break;
        case StoreOp::Kind::drop_oldest:
        case StoreOp::Kind::hand_over_messages: {
            const auto found = clients_.find(op.client);
            if (found == clients_.end()) {
                break;  // it has no rows
            }
            ClientRows& rows = found->second;
            const std::uint64_t live = rows.rows - rows.dropped;
            const std::uint64_t dropped =
                op.kind == StoreOp::Kind::drop_oldest ? std::min(op.count, live) : live;
            rows.dropped += dropped;
            live_messages_ -= dropped;
            dead_messages_ += dropped;
            if (dropped > 0 && !rows.dropped_changed) {
                rows.dropped_changed = true;
                dropped_changed_.push_back(op.client);
            }
            break;
        }
    }
}

void SqliteStore::keep_messages(std::uint64_t client, std::string_view frames) {
    ClientRows& rows = clients_[client];
    for_each_encoded_frame(frames, [&](std::string_view frame) {
        sqlite3_bind_int64(insert_message_, 1, static_cast<sqlite3_int64>(client));
        bind_text(insert_message_, 2, frame);
        step_done(insert_message_);
        ++rows.rows;
        ++live_messages_;
        ++appended_in_batch_;
    });
}

// Once per client and batch, however many drops it had: a flooded lost client drops one
// message per message it keeps.
void SqliteStore::write_dropped_counts() {
    for (const std::uint64_t id : dropped_changed_) {
        const auto found = clients_.find(id);
        if (found == clients_.end()) {
            continue;  // removed later in the batch
        }
        found->second.dropped_changed = false;
        sqlite3_bind_int64(set_dropped_, 1, static_cast<sqlite3_int64>(id));
        sqlite3_bind_int64(set_dropped_, 2, static_cast<sqlite3_int64>(found->second.dropped));
        step_done(set_dropped_);
    }
    dropped_changed_.clear();
}

// The live and dead totals from each client's rows and the orphan rows.
void SqliteStore::tally_rows() {
    live_messages_ = 0;
    dead_messages_ = orphan_rows_;
    for (auto& [id, rows] : clients_) {
        rows.dropped = std::min(rows.dropped, rows.rows);
        live_messages_ += rows.rows - rows.dropped;
        dead_messages_ += rows.dropped;
    }
}

// After a rollback the counts kept here may be ahead of the file: read them back from it. If
// even that fails, no compaction runs (it would take the missing counts for dead rows) until
// a later recount succeeds.
void SqliteStore::recount_from_file() {
    clients_.clear();
    orphan_rows_ = 0;
    live_messages_ = 0;
    dead_messages_ = 0;
    counts_known_ = false;
    bool read = true;
    const auto each_row = [&](const char* sql, auto&& on_row) {
        sqlite3_stmt* statement = nullptr;
        int status = sqlite3_prepare_v2(db_, sql, -1, &statement, nullptr);
        while (status == SQLITE_OK && (status = sqlite3_step(statement)) == SQLITE_ROW) {
            on_row(statement);
            status = SQLITE_OK;
        }
        sqlite3_finalize(statement);
        read = read && status == SQLITE_DONE;
    };
    std::unordered_map<std::uint64_t, std::uint64_t> dropped;
    each_row("SELECT id, dropped FROM clients",
             [&](sqlite3_stmt* row) { dropped[column_u64(row, 0)] = column_u64(row, 1); });
    each_row("SELECT client, count(*) FROM messages GROUP BY client", [&](sqlite3_stmt* row) {
        const auto found = dropped.find(column_u64(row, 0));
        if (found == dropped.end()) {
            orphan_rows_ += column_u64(row, 1);
        } else {
            clients_[found->first] = {column_u64(row, 1), found->second, false};
        }
    });
    tally_rows();
    counts_known_ = read;
}

// Nothing is live: the whole table goes at once (SQLite drops its pages without a scan).
bool SqliteStore::delete_all_messages() {
    try {
        exec("BEGIN");
        exec("DELETE FROM messages");
        exec("UPDATE clients SET dropped = 0 WHERE dropped != 0");
        exec("COMMIT");
    } catch (const BatchFailed& failure) {
        error_ = failure.what;
        exec_quietly("ROLLBACK");
        recount_from_file();
        return false;
    }
    forget_dead_rows();
    return true;
}

void SqliteStore::forget_dead_rows() {
    for (auto& [id, rows] : clients_) {
        rows.rows -= rows.dropped;
        rows.dropped = 0;
    }
    orphan_rows_ = 0;
    dead_messages_ = 0;
    exec_quietly("PRAGMA incremental_vacuum");
}

// One pass in sequence order finds the dead rows: each client's first `dropped`, and every row
// of a removed client. They are deleted by runs of consecutive rows.
bool SqliteStore::compact_if_worthwhile() {
    if (!counts_known_) {
        recount_from_file();
        if (!counts_known_) {
            return false;
        }
    }
    if (live_messages_ == 0 && dead_messages_ > 0) {
        return delete_all_messages();
    }
    if (dead_messages_ < kCompactAtLeast || dead_messages_ <= live_messages_) {
        return true;
    }
    try {
        std::vector<std::pair<sqlite3_int64, sqlite3_int64>> dead_runs;
        std::unordered_map<std::uint64_t, std::uint64_t> seen;
        sqlite3_stmt* scan = nullptr;
        if (sqlite3_prepare_v2(db_, "SELECT seq, client FROM messages ORDER BY seq", -1, &scan,
                               nullptr) != SQLITE_OK) {
            throw BatchFailed{sqlite3_errmsg(db_)};
        }
        bool previous_dead = false;
        int status;
        while ((status = sqlite3_step(scan)) == SQLITE_ROW) {
            const sqlite3_int64 seq = sqlite3_column_int64(scan, 0);
            const auto found = clients_.find(column_u64(scan, 1));
            const bool dead =
                found == clients_.end() || seen[found->first]++ < found->second.dropped;
            if (dead && previous_dead) {
                dead_runs.back().second = seq;
            } else if (dead) {
                dead_runs.emplace_back(seq, seq);
            }
            previous_dead = dead;
        }
        sqlite3_finalize(scan);
        if (status != SQLITE_DONE) {
            throw BatchFailed{sqlite3_errmsg(db_)};
        }
        exec("BEGIN");
        sqlite3_stmt* erase = nullptr;
        if (sqlite3_prepare_v2(db_, "DELETE FROM messages WHERE seq BETWEEN ?1 AND ?2", -1, &erase,
                               nullptr) != SQLITE_OK) {
            throw BatchFailed{sqlite3_errmsg(db_)};
        }
        for (const auto& [first, last] : dead_runs) {
            sqlite3_bind_int64(erase, 1, first);
            sqlite3_bind_int64(erase, 2, last);
            if (sqlite3_step(erase) != SQLITE_DONE) {
                const std::string why = sqlite3_errmsg(db_);
                sqlite3_finalize(erase);
                throw BatchFailed{why};
            }
            sqlite3_reset(erase);
        }
        sqlite3_finalize(erase);
        exec("UPDATE clients SET dropped = 0 WHERE dropped != 0");
        exec("COMMIT");
        forget_dead_rows();
        return true;
    } catch (const BatchFailed& failure) {
        error_ = failure.what;
        exec_quietly("ROLLBACK");
        recount_from_file();
        return false;
    }
}

}  // namespace pubsubx::store
