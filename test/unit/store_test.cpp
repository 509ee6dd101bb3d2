// The durable store (src/store/): the SQLite file on its own, and the store beside a broker,
// whose lost clients it must mirror exactly.
#include <doctest/doctest.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <list>
#include <random>
#include <sstream>
#include <thread>

#include "broker_fixture.hpp"
#include "store/data_dir.hpp"
#include "store/durable_store.hpp"
#include "store/sqlite_store.hpp"
#include "store/store_writer.hpp"

namespace pubsubx::store {
namespace {

using test_support::FakeConnection;
using test_support::Frames;

// A fresh directory under /tmp, removed with everything in it at the end of the test.
struct TempDir {
    std::filesystem::path path;
    TempDir() {
        char pattern[] = "/tmp/pubsubx-store-test-XXXXXX";
        path = ::mkdtemp(pattern);
    }
    ~TempDir() { std::filesystem::remove_all(path); }
    std::filesystem::path db() const { return path / "pubsubx.db"; }
};

std::string file_bytes(const std::filesystem::path& file) {
    std::ifstream in{file, std::ios::binary};
    return {std::istreambuf_iterator<char>{in}, {}};
}

std::string frames_text(std::initializer_list<std::string_view> frames) {
    std::string text;
    for (std::string_view frame : frames) {
        text.append(frame).append(kDelimiter);
    }
    return text;
}

void write_sql(const std::filesystem::path& file, const char* sql) {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(file.c_str(), &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db, sql, nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(db);
}

TEST_CASE("the file keeps clients, subscriptions in order and live messages in queue order") {
    TempDir dir;
    const SecretDigest secret = SecretDigest::of("s3cret");
    {
        SqliteStore store{dir.db(), Durability::normal};
        CHECK(store.load().clients.empty());
        store.accept();
        StoreBatch batch;
        std::string record = "alice";
        const auto digest = secret.bytes();
        record.append(reinterpret_cast<const char*>(digest.data()), digest.size());
        batch.add(StoreOp::Kind::save_client, 7, 1, record);
        batch.add(StoreOp::Kind::save_client, 9, 0, "bob");
        batch.add(StoreOp::Kind::subscribe, 7, 0, "z");
        batch.add(StoreOp::Kind::subscribe, 7, 0, "a/+");
        batch.add(StoreOp::Kind::subscribe, 7, 0, "m");
        batch.add(StoreOp::Kind::unsubscribe, 7, 0, "m");
        batch.add(StoreOp::Kind::keep_messages, 7, 0, frames_text({"z 1", "z 2"}));
        batch.add(StoreOp::Kind::keep_messages, 9, 0, frames_text({"x 1"}));
        batch.add(StoreOp::Kind::keep_messages, 7, 0, frames_text({"a/b 3"}));
        batch.add(StoreOp::Kind::drop_oldest, 7, 1);
        REQUIRE(store.apply(batch));
        StoreBatch second;
        second.add(StoreOp::Kind::hand_over_messages, 9);
        second.add(StoreOp::Kind::keep_messages, 9, 0, frames_text({"x 2"}));
        REQUIRE(store.apply(second));
        CHECK(store.messages_appended() == 5);
        CHECK(store.live_messages() == 3);
        CHECK(store.dead_messages() == 2);
    }
    SqliteStore reopened{dir.db(), Durability::full};
    const LoadedStore loaded = reopened.load();
    REQUIRE(loaded.clients.size() == 2);
    const RecoveredClient& alice = loaded.clients[0];
    CHECK(alice.id == 7);
    CHECK(alice.name == "alice");
    REQUIRE(alice.secret);
    CHECK(alice.secret->matches("s3cret"));
    CHECK_FALSE(alice.secret->matches("s3cre"));
    CHECK(alice.subscriptions == std::vector<std::string>{"z", "a/+"});
    CHECK(alice.frames == frames_text({"z 2", "a/b 3"}));
    CHECK(loaded.clients[1].name == "bob");
    CHECK_FALSE(loaded.clients[1].secret);
    CHECK(loaded.clients[1].frames == frames_text({"x 2"}));
    CHECK(loaded.messages == 3);
    CHECK(loaded.last_client_id == 9);
    CHECK(reopened.live_messages() == 3);
    CHECK(reopened.dead_messages() == 2);
}

TEST_CASE("dead rows are deleted in one pass once they outnumber the live ones") {
    TempDir dir;
    SqliteStore store{dir.db(), Durability::normal};
    store.load();
    store.accept();
    const std::uint64_t rows = SqliteStore::kCompactAtLeast + 100;
    StoreBatch batch;
    batch.add(StoreOp::Kind::save_client, 1, 0, "kept");
    batch.add(StoreOp::Kind::save_client, 2, 0, "gone");
    std::string frames;
    for (std::uint64_t i = 0; i < rows; ++i) {
        frames.append("t " + std::to_string(i)).append(kDelimiter);
    }
    batch.add(StoreOp::Kind::keep_messages, 1, 0, frames);
    batch.add(StoreOp::Kind::keep_messages, 2, 0, frames_text({"t x", "t y"}));
    batch.add(StoreOp::Kind::drop_oldest, 1, rows - 3);
    batch.add(StoreOp::Kind::remove_client, 2);
    REQUIRE(store.apply(batch));
    CHECK(store.dead_messages() == rows - 3 + 2);
    REQUIRE(store.compact_if_worthwhile());
    CHECK(store.dead_messages() == 0);
    CHECK(store.live_messages() == 3);
    StoreBatch later;
    later.add(StoreOp::Kind::keep_messages, 1, 0, frames_text({"t last"}));
    later.add(StoreOp::Kind::drop_oldest, 1, 1);
    REQUIRE(store.apply(later));

    SqliteStore reopened{dir.db(), Durability::normal};
    const LoadedStore loaded = reopened.load();
    REQUIRE(loaded.clients.size() == 1);
    CHECK(loaded.clients[0].frames == "t " + std::to_string(rows - 2) + std::string{kDelimiter} +
                                          "t " + std::to_string(rows - 1) +
                                          std::string{kDelimiter} + "t last" +
                                          std::string{kDelimiter});
    // The removed client's id is never given out again.
    CHECK(loaded.last_client_id == 1);
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(dir.db().c_str(), &db) == SQLITE_OK);
    sqlite3_stmt* count = nullptr;
    REQUIRE(sqlite3_prepare_v2(db, "SELECT count(*) FROM messages", -1, &count, nullptr) ==
            SQLITE_OK);
    REQUIRE(sqlite3_step(count) == SQLITE_ROW);
    CHECK(sqlite3_column_int64(count, 0) == 4);  // 3 live, 1 dropped since the pass
    sqlite3_finalize(count);
    sqlite3_close(db);
}

TEST_CASE(
    "a lost client's messages in a row share one change, and a store with nothing live "
    "is emptied") {
    StoreBatch batch;
    batch.add(StoreOp::Kind::keep_messages, 1, 0, frames_text({"t 1"}));
    batch.add(StoreOp::Kind::keep_messages, 1, 0, frames_text({"t 2"}));
    batch.add(StoreOp::Kind::keep_messages, 2, 0, frames_text({"t 3"}));
    batch.add(StoreOp::Kind::keep_messages, 1, 0, frames_text({"t 4"}));
    REQUIRE(batch.ops.size() == 3);
    CHECK(batch.text(batch.ops[0]) == frames_text({"t 1", "t 2"}));

    TempDir dir;
    SqliteStore store{dir.db(), Durability::normal};
    store.load();
    store.accept();
    StoreBatch clients;
    clients.add(StoreOp::Kind::save_client, 1, 0, "a");
    clients.add(StoreOp::Kind::save_client, 2, 0, "b");
    clients.append(batch);
    REQUIRE(store.apply(clients));
    CHECK(store.live_messages() == 4);
    StoreBatch restored;
    restored.add(StoreOp::Kind::hand_over_messages, 1);
    restored.add(StoreOp::Kind::drop_oldest, 2, 5);
    REQUIRE(store.apply(restored));
    CHECK(store.dead_messages() == 4);
    REQUIRE(store.compact_if_worthwhile());
    CHECK(store.dead_messages() == 0);
    SqliteStore reopened{dir.db(), Durability::normal};
    const LoadedStore loaded = reopened.load();
    REQUIRE(loaded.clients.size() == 2);
    CHECK(loaded.messages == 0);
}

TEST_CASE("a batch whose first changes were committed keeps only the text of the rest") {
    // A failed chunk is retried with what follows it; the committed ones' text must not stay
    // counted in the backlog (second review of issue 11).
    StoreBatch batch;
    batch.add(StoreOp::Kind::save_client, 1, 0, std::string(1000, 'a'));
    batch.add(StoreOp::Kind::subscribe, 1, 0, "t");
    batch.add(StoreOp::Kind::keep_messages, 1, 0, frames_text({"t 1"}));
    const std::size_t before = batch.bytes();
    batch.drop_front(1);
    REQUIRE(batch.ops.size() == 2);
    CHECK(batch.bytes() == before - 1000 - sizeof(StoreOp));
    CHECK(batch.text(batch.ops[0]) == "t");
    CHECK(batch.text(batch.ops[1]) == frames_text({"t 1"}));
}

TEST_CASE("a rewrite of the store is one transaction, however large") {
    // Cut into chunks, a crash between the wipe and the last chunk left part of the clients
    // (review of issue 11).
    TempDir dir;
    auto file = std::make_unique<SqliteStore>(dir.db(), Durability::normal);
    file->load();
    file->accept();
    StoreWriter writer{std::move(file), 64 * 1024 * 1024};
    StoreBatch rewrite;
    rewrite.add(StoreOp::Kind::wipe, 0);
    for (std::uint64_t id = 1; id <= 3 * StoreWriter::kCommitOps; ++id) {
        rewrite.add(StoreOp::Kind::save_client, id, 0, "c" + std::to_string(id));
    }
    writer.replace_all(std::move(rewrite));
    for (int i = 0; i < 500 && !writer.idle(); ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds{10});
    }
    REQUIRE(writer.idle());
    CHECK(writer.status().commits == 1);
    CHECK(writer.committed(writer.last_added()));
    CHECK(writer.stop() == 0);
}

// Stands in for a store: the core only needs to have one.
struct SilentPersistence final : Persistence {
    void client_saved(const Client&) override {}
    void client_removed(const Client&) override {}
    void subscribed(const Client&, std::string_view) override {}
    void unsubscribed(const Client&, std::string_view) override {}
    void messages_kept(const Client&, std::string_view) override {}
    void oldest_dropped(const Client&, std::size_t) override {}
    void queue_handed_over(const Client&) override {}
};

TEST_CASE("a restored queue waits for the store on the connection that takes it over too") {
    Logger logger{LogLevel::quiet, std::tmpfile()};
    BrokerConfig config = test_support::test_config();
    Broker broker{config, logger};
    SilentPersistence persistence;
    broker.attach_persistence(&persistence);
    FakeConnection first{broker};
    first.send("CONNECT x s3cret");
    first.send("SUBSCRIBE t");
    first.received();
    first.lose({});
    FakeConnection publisher{broker};
    publisher.send("CONNECT p");
    publisher.send("PUBLISH t kept");
    Effects effects;
    broker.take_effects(effects);
    FakeConnection restoring{broker};
    broker.handle_frame(restoring, "CONNECT x s3cret", {});
    broker.take_effects(effects);
    CHECK(effects.hold_until_durable == std::vector<Connection*>{&restoring});
    // Before the store committed the hand-over, the same client takes the session over.
    FakeConnection taking_over{broker};
    broker.handle_frame(taking_over, "CONNECT x s3cret", {});
    broker.take_effects(effects);
    CHECK(effects.hold_until_durable == std::vector<Connection*>{&taking_over});
    broker.attach_persistence(nullptr);
}

TEST_CASE("a file that is not a store of this version is refused and left as it was") {
    TempDir dir;
    SUBCASE("garbage") {
        std::ofstream{dir.db(), std::ios::binary} << std::string(8192, 'g');
    }
    SUBCASE("a newer schema") {
        write_sql(dir.db(), "CREATE TABLE x(y); PRAGMA user_version = 99;");
    }
    SUBCASE("another program's database") {
        write_sql(dir.db(), "CREATE TABLE x(y); INSERT INTO x VALUES(1);");
    }
    const std::string before = file_bytes(dir.db());
    std::string error;
    try {
        SqliteStore store{dir.db(), Durability::normal};
    } catch (const StoreError& failure) {
        error = failure.what();
    }
    INFO(error);
    CHECK(error.find(dir.db().string()) != std::string::npos);
    CHECK((error.find("newer") != std::string::npos ||
           error.find("not a PubSubX store") != std::string::npos ||
           error.find("not a database") != std::string::npos));
    CHECK(file_bytes(dir.db()) == before);
}

TEST_CASE("an empty file is a store not yet created") {
    TempDir dir;
    std::ofstream{dir.db()}.close();
    SqliteStore store{dir.db(), Durability::normal};
    CHECK(store.load().clients.empty());
}

TEST_CASE("a data directory serves one server at a time") {
    TempDir dir;
    DataDir first{dir.path / "data"};
    std::string error;
    try {
        DataDir second{dir.path / "data"};
    } catch (const StoreError& failure) {
        error = failure.what();
    }
    CHECK(error.find("in use by another pubsubx-server (pid " + std::to_string(::getpid())) !=
          std::string::npos);
}

// The broker side: random traffic with small bounds (drops, the global cap, evictions,
// expiry), then a graceful close and a second broker loading the directory. Every client
// must come back lost with the subscriptions and exactly the queued messages the first
// broker held.
struct Mirror {
    Logger logger{LogLevel::quiet, std::tmpfile()};
    BrokerConfig config;
    TempDir dir;

    Mirror() {
        config.lost_timeout = std::chrono::seconds{10};
        config.max_queue_bytes = 120;
        config.max_total_queue_bytes = 400;
        config.max_lost_clients = 4;
    }
};

struct Expected {
    std::vector<std::string> subscriptions;
    std::string frames;
    bool has_secret;
};

std::vector<std::string> topics_of(const Client& client) {
    std::vector<std::string> topics;
    for (const Subscription& subscription : client.subscriptions()) {
        topics.emplace_back(subscription.topic->name());
    }
    return topics;
}

TEST_CASE("the store mirrors the lost clients of a broker through random traffic") {
    std::size_t kept_messages = 0;
    std::uint64_t drops = 0;
    std::uint64_t cap_drops = 0;
    std::uint64_t not_durable = 0;
    std::uint64_t evictions = 0;
    for (unsigned seed = 1; seed <= 24; ++seed) {
        CAPTURE(seed);
        Mirror mirror;
        std::map<std::string, Expected> expected;
        {
            Broker broker{mirror.config, mirror.logger};
            // Odd seeds give the writer a backlog bound so small that it falls behind: the
            // store must then be rewritten from memory, by maintain() or at the close.
            const std::size_t backlog = seed % 2 == 1 ? 512 : 64 * 1024 * 1024;
            DurableStore store{
                {mirror.dir.path, Durability::normal, backlog}, broker, mirror.logger};
            std::mt19937 random{seed};
            const auto pick = [&](std::size_t n) {
                return std::uniform_int_distribution<std::size_t>{0, n - 1}(random);
            };
            const std::vector<std::string> topics{"a", "b", "a/+", "#", "c/d"};
            std::list<FakeConnection> connections;
            std::map<std::string, FakeConnection*> connected;
            FakeConnection publisher{broker};
            publisher.send("CONNECT publisher");
            TimePoint now{};
            for (int step = 0; step < 600; ++step) {
                now += std::chrono::milliseconds{100};
                const std::string name = "c" + std::to_string(pick(7));
                const auto found = connected.find(name);
                FakeConnection* connection = found == connected.end() ? nullptr : found->second;
                switch (pick(7)) {
                    case 0:
                        if (connection == nullptr) {
                            connections.emplace_back(broker);
                            const std::string secret = pick(2) == 0 ? "" : " secret-" + name;
                            if (!connections.back()
                                     .send("CONNECT " + name + secret, now)
                                     .error_frame.empty()) {
                                connections.pop_back();
                                break;
                            }
                            connected[name] = &connections.back();
                            connections.back().received(now);
                        }
                        break;
                    case 1:
                        if (connection != nullptr) {
                            connection->send("SUBSCRIBE " + topics[pick(topics.size())], now);
                        }
                        break;
                    case 2:
                        if (connection != nullptr) {
                            connection->send("UNSUBSCRIBE " + topics[pick(topics.size())], now);
                        }
                        break;
                    case 3:
                    case 4:
                        publisher.send("PUBLISH " + std::string{pick(2) == 0 ? "a" : "c/d"} +
                                           " message-" + std::to_string(step),
                                       now);
                        break;
                    case 5:
                        if (connection != nullptr) {
                            if (pick(4) == 0) {
                                connection->send("DISCONNECT", now);
                            } else {
                                connection->lose(now);
                            }
                            connected.erase(name);
                        }
                        break;
                    case 6:
                        if (connection != nullptr) {
                            connection->received(now);
                        } else {
                            test_support::fire_expiry(broker, now + std::chrono::seconds{pick(12)});
                        }
                        break;
                }
            }
            publisher.received(now);
            store.maintain();
            REQUIRE(broker.check_consistency().empty());
            not_durable += store.figures().messages_not_durable;
            drops += broker.stats().dropped;
            cap_drops += broker.stats().dropped_global_cap;
            evictions += broker.stats().lost_clients_evicted;
            broker.for_each_client([&](const Client& client) {
                expected[client.name()] = {topics_of(client),
                                           std::string{client.outbound().messages()},
                                           client.credentials() != nullptr};
            });
            store.close();
        }
        {
            // The file itself, before a broker applies its bounds to what it loads.
            SqliteStore file{mirror.dir.db(), Durability::normal};
            const LoadedStore loaded = file.load();
            CHECK(loaded.clients.size() == expected.size());
            for (const RecoveredClient& client : loaded.clients) {
                CAPTURE(client.name);
                REQUIRE(expected.count(client.name) == 1);
                CHECK(client.subscriptions == expected.at(client.name).subscriptions);
                CHECK(client.frames == expected.at(client.name).frames);
            }
        }
        Broker recovered{mirror.config, mirror.logger};
        std::map<std::string, std::string> recovered_frames;
        {
            DurableStore store{{mirror.dir.path}, recovered, mirror.logger};
            CHECK(recovered.check_consistency().empty());
            // Every client may be lost now: the lost clients' share of the cap and their own
            // cap may keep less than the file held, the newest messages and latest losses.
            recovered.for_each_client([&](const Client& client) {
                CAPTURE(client.name());
                REQUIRE(expected.count(client.name()) == 1);
                const Expected& before = expected.at(client.name());
                CHECK(client.state() == ClientState::lost);
                CHECK(topics_of(client) == before.subscriptions);
                CHECK(before.frames.ends_with(client.outbound().messages()));
                CHECK((client.credentials() != nullptr) == before.has_secret);
                kept_messages += client.outbound().message_bytes() > 0 ? 1 : 0;
                recovered_frames[client.name()] = client.outbound().messages();
            });
            // What the bounds dropped at load, the file loses too once the store is rewritten.
            store.maintain();
            store.close();
        }
        SqliteStore file{mirror.dir.db(), Durability::normal};
        const LoadedStore loaded = file.load();
        CHECK(loaded.clients.size() == recovered.client_count());
        for (const RecoveredClient& client : loaded.clients) {
            CAPTURE(client.name);
            CHECK(client.frames == recovered_frames[client.name]);
        }
    }
    // The traffic did reach every path the store mirrors.
    CHECK(kept_messages > 10);
    CHECK(drops > 10);
    CHECK(cap_drops > 10);
    CHECK(not_durable > 10);
    CHECK(evictions > 0);
}

}  // namespace
}  // namespace pubsubx::store
