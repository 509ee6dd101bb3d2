// The durable store (--data-dir, issue 11) against the real server over loopback TCP: what a
// graceful restart brings back, what a SIGKILL at a random moment may lose (only what came
// after the last commit), the stores the server must refuse without touching them, a full
// disk, and secrets that never reach the disk. SQLite is opened here only to check the file.
#include <doctest/doctest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

using namespace pubsubx::testing;
namespace fs = std::filesystem;

namespace {

using SteadyClock = std::chrono::steady_clock;

// Longer than the writer's group window (2 ms) and the bound (10 ms) by far: after it,
// everything the server has processed is committed.
constexpr Millis kSettle = 200ms;

// A directory of its own, removed at the end. 0755: the read-only test runs the server as an
// unprivileged user, which must reach the data directory inside.
class TempDir {
  public:
    TempDir() {
        const char* base = std::getenv("TMPDIR");
        std::string pattern = std::string{base != nullptr && *base != '\0' ? base : "/tmp"} +
                              "/pubsubx-durability-XXXXXX";
        if (mkdtemp(pattern.data()) == nullptr) {
            throw std::runtime_error("mkdtemp failed");
        }
        path_ = pattern;
        fs::permissions(path_, fs::perms{0755});
    }
    ~TempDir() {
        std::error_code ignored;
        fs::permissions(path_ / "data", fs::perms{0755}, ignored);
        fs::remove_all(path_, ignored);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;

    const fs::path& path() const { return path_; }
    fs::path data() const { return path_ / "data"; }
    fs::path database() const { return data() / "pubsubx.db"; }

  private:
    fs::path path_;
};

std::vector<std::string> with_store(const fs::path& data, std::vector<std::string> more = {}) {
    std::vector<std::string> args{"--data-dir", data.string()};
    args.insert(args.end(), more.begin(), more.end());
    return args;
}

std::string file_bytes(const fs::path& file) {
    std::ifstream in{file, std::ios::binary};
    std::ostringstream bytes;
    bytes << in.rdbuf();
    return bytes.str();
}

void write_file(const fs::path& file, const std::string& bytes) {
    std::ofstream out{file, std::ios::binary | std::ios::trunc};
    out << bytes;
}

// The files of `dir` and their bytes.
std::map<std::string, std::string> files_in(const fs::path& dir) {
    std::map<std::string, std::string> files;
    for (const auto& entry : fs::directory_iterator{dir}) {
        if (entry.is_regular_file()) {
            files[entry.path().filename().string()] = file_bytes(entry.path());
        }
    }
    return files;
}

// The names of the files in `dir` whose bytes contain `needle`.
std::vector<std::string> files_containing(const fs::path& dir, const std::string& needle) {
    std::vector<std::string> found;
    for (const auto& [name, bytes] : files_in(dir)) {
        if (bytes.find(needle) != std::string::npos) {
            found.push_back(name);
        }
    }
    return found;
}

// An SQLite connection of the test's own, to check or prepare a store the server is not using.
class Database {
  public:
    Database(const fs::path& file, bool read_only) {
        const int flags = read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE;
        if (sqlite3_open_v2(file.c_str(), &db_, flags, nullptr) != SQLITE_OK) {
            const std::string why = db_ != nullptr ? sqlite3_errmsg(db_) : "out of memory";
            sqlite3_close(db_);
            throw std::runtime_error("cannot open " + file.string() + ": " + why);
        }
    }
    ~Database() { sqlite3_close(db_); }
    Database(const Database&) = delete;
    Database& operator=(const Database&) = delete;

    // Every row's columns as text, joined by '|', rows by '\n'; "error: ..." on failure.
    std::string query(const std::string& sql) {
        sqlite3_stmt* statement = nullptr;
        if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &statement, nullptr) != SQLITE_OK) {
            return std::string{"error: "} + sqlite3_errmsg(db_);
        }
        std::string rows;
        int status;
        while ((status = sqlite3_step(statement)) == SQLITE_ROW) {
            if (!rows.empty()) {
                rows += '\n';
            }
            for (int column = 0; column < sqlite3_column_count(statement); ++column) {
                const auto* text = sqlite3_column_text(statement, column);
                rows += (column > 0 ? "|" : "") +
                        std::string{text != nullptr ? reinterpret_cast<const char*>(text) : ""};
            }
        }
        sqlite3_finalize(statement);
        return status == SQLITE_DONE ? rows : std::string{"error: "} + sqlite3_errmsg(db_);
    }

  private:
    sqlite3* db_ = nullptr;
};

// "ok" for a sound file. Read-only: the check must not checkpoint or repair what it checks.
std::string integrity_of(const fs::path& file) {
    return Database{file, true}.query("PRAGMA integrity_check");
}

// "Store <path>: loaded N client(s) and M queued message(s) in X ms"; {-1, -1} if absent.
std::pair<long, long> loaded_counts(const std::string& output) {
    const std::size_t at = output.find(": loaded ");
    if (at == std::string::npos) {
        return {-1, -1};
    }
    std::istringstream line{output.substr(at + 9)};
    long clients = -1;
    long messages = -1;
    std::string word;
    line >> clients >> word >> word >> messages;
    return {clients, messages};
}

// Reads frames until `last` arrives; the frames before it, or nullopt if it did not come.
std::optional<std::vector<std::string>> read_until(TestClient& client, const std::string& last,
                                                   Millis timeout = 5000ms) {
    const auto deadline = SteadyClock::now() + timeout;
    std::vector<std::string> before;
    while (SteadyClock::now() < deadline) {
        const auto frame = client.read_frame(
            std::chrono::duration_cast<Millis>(deadline - SteadyClock::now()) + 1ms);
        if (!frame) {
            return std::nullopt;
        }
        if (*frame == last) {
            return before;
        }
        before.push_back(*frame);
    }
    return std::nullopt;
}

// Every frame that arrives until none comes for `quiet`.
std::vector<std::string> read_all(TestClient& client, Millis quiet) {
    std::vector<std::string> frames;
    while (auto frame = client.read_frame(quiet)) {
        frames.push_back(std::move(*frame));
    }
    return frames;
}

bool wait_logged_after(ServerProcess& server, std::size_t mark, const std::string& needle,
                       Millis timeout = 5000ms) {
    return server.wait_for_output(needle, timeout, mark);
}

// A client lost with these subscriptions (and a secret, if given).
void make_lost(ServerProcess& server, const std::string& name, const std::string& secret,
               const std::vector<std::string>& topics) {
    const std::size_t mark = server.output().size();
    TestClient client{server.port()};
    client.send_frame("CONNECT " + name + (secret.empty() ? "" : " " + secret));
    REQUIRE(client.read_frame() == "OK: Conn accepted");
    for (const std::string& topic : topics) {
        client.send_frame("SUBSCRIBE " + topic);
    }
    client.barrier();
    client.drop();
    REQUIRE(wait_logged_after(server, mark, "Client '" + name + "' lost"));
}

// Publishes `frames` (PUBLISH commands) in one write and waits until the server has
// processed them all.
void publish_all(TestClient& publisher, const std::vector<std::string>& commands) {
    std::string bytes;
    for (const std::string& command : commands) {
        pubsubx::append_frame(bytes, command);
    }
    publisher.send_raw(bytes);
    publisher.barrier();
}

// The number in "<topic> <letter><number> ..." data, as the tests below number messages.
long number_in(const std::string& frame, char letter) {
    const std::size_t at = frame.find(std::string{" "} + letter);
    return at == std::string::npos ? -1 : std::stol(frame.substr(at + 2));
}

// Runs the server on a store it must refuse: it exits with 1 before listening.
struct RefusedStart {
    std::optional<int> exit_code;
    std::string output;
};

RefusedStart start_refused(const std::string& program, const std::vector<std::string>& args) {
    ChildProcess server{program, args};
    RefusedStart result;
    result.exit_code = server.wait_exit(10s);
    result.output = server.output();
    return result;
}

RefusedStart start_refused(const fs::path& data) {
    return start_refused(binary_path("PUBSUBX_SERVER"), {"0", "--data-dir", data.string()});
}

// A store with one lost client, "kept", subscribed to "k", with messages queued.
void make_store(const TempDir& dir, int messages = 20) {
    ServerProcess server{with_store(dir.data())};
    make_lost(server, "kept", "", {"k"});
    TestClient publisher{server.port()};
    publisher.connect_as("filler");
    std::vector<std::string> commands;
    for (int i = 1; i <= messages; ++i) {
        commands.push_back("PUBLISH k n" + std::to_string(i) + " " + std::string(500, 'f'));
    }
    publish_all(publisher, commands);
    publisher.send_frame("DISCONNECT");
    CHECK(publisher.wait_closed());
    server.send_signal(SIGTERM);
    REQUIRE(server.wait_exit() == 0);
}

}  // namespace

TEST_CASE("after SIGTERM and a restart, lost clients come back whole, connected ones as lost") {
    TempDir dir;
    const auto options = with_store(
        dir.data(), {"--max-queue", "64000000", "--lost-timeout", "60", "--write-timeout", "0"});
    const std::string beta_secret = "b3ta-Secret";
    constexpr int kMessages = 60;
    constexpr int kBulk = 30'000;
    std::vector<std::string> alpha_expected;
    std::vector<std::string> beta_expected;
    std::vector<std::string> hog_old_frames;  // what the hog's connection got before the stop
    {
        ServerProcess server{options};
        // Order on restore: the subscription order after these changes (news subscribed again
        // goes last, tmp is gone, a second SUBSCRIBE weather changes nothing).
        make_lost(server, "alpha", "", {"news", "sport/+", "weather", "tmp", "weather"});
        {
            TestClient alpha{server.port()};
            alpha.send_frame("CONNECT alpha");
            REQUIRE(alpha.read_frame() == "RESTORED alpha");
            REQUIRE(alpha.read_frame() == "news sport/+ weather tmp");
            alpha.send_frame("UNSUBSCRIBE news");
            alpha.send_frame("SUBSCRIBE news");
            alpha.send_frame("UNSUBSCRIBE tmp");
            alpha.barrier();
            alpha.drop();
            wait_lost(server, "alpha");
        }
        make_lost(server, "beta", beta_secret, {"news"});
        {
            TestClient gone{server.port()};  // DISCONNECT removes a client: it is not kept
            gone.connect_as("gone");
            gone.send_frame("SUBSCRIBE news");
            gone.send_frame("DISCONNECT");
            CHECK(gone.wait_closed());
        }
        // A connected client that reads nothing: what the socket buffers cannot take waits in
        // the broker's queue for it.
        TestClient hog{server.port(), 4096};
        hog.connect_as("hog");
        hog.send_frame("SUBSCRIBE bulk");
        hog.barrier();

        TestClient publisher{server.port()};
        publisher.connect_as("publisher");
        const std::vector<std::string> topics{"news",      "sport/football", "weather",
                                              "sport/a/b", "other",          "sport/tennis"};
        std::vector<std::string> commands;
        for (int i = 1; i <= kMessages; ++i) {
            const std::string& topic = topics[static_cast<std::size_t>(i) % topics.size()];
            const std::string data = "m" + std::to_string(i);
            commands.push_back("PUBLISH " + topic + " " + data);
            if (topic == "news" || topic == "weather" ||
                (topic.starts_with("sport/") && topic != "sport/a/b")) {
                alpha_expected.push_back(topic + " " + data);
            }
            if (topic == "news") {
                beta_expected.push_back(topic + " " + data);
            }
        }
        for (int i = 1; i <= kBulk; ++i) {
            commands.push_back("PUBLISH bulk b" + std::to_string(i) + " " + std::string(300, 'b'));
        }
        publish_all(publisher, commands);

        server.send_signal(SIGTERM);
        REQUIRE(server.wait_exit() == 0);
        CHECK(server.output().find("Store: closed with ") != std::string::npos);
        // The kernel still delivers what the server had written before it stopped.
        hog_old_frames = read_all(hog, 500ms);
    }
    CHECK(integrity_of(dir.database()) == "ok");

    ServerProcess server{options};
    // alpha, beta, hog and the publisher (connected at the stop) are kept; gone is not.
    const auto [clients, messages] = loaded_counts(server.output());
    CHECK(clients == 4);

    TestClient alpha{server.port()};
    alpha.send_frame("CONNECT alpha");
    CHECK(alpha.read_frame() == "RESTORED alpha");
    CHECK(alpha.read_frame() == "sport/+ weather news");
    std::vector<std::string> alpha_got;
    for (std::size_t i = 0; i < alpha_expected.size(); ++i) {
        alpha_got.push_back(alpha.read_frame().value_or("(nothing)"));
    }
    CHECK(alpha_got == alpha_expected);
    alpha.barrier();
    CHECK(alpha.frames_waiting() == 0);

    // The secret rule came back: a wrong secret, or none, is refused; the right one restores.
    // Each attempt comes from an address of its own, and waits out the name's back-off.
    TestClient thief{server.port(), 0, "127.0.0.2"};
    thief.send_frame("CONNECT beta wrong-secret");
    CHECK(thief.read_frame() == "ERROR: Not authorized");
    CHECK(thief.wait_closed());
    std::this_thread::sleep_for(300ms);
    TestClient no_secret{server.port(), 0, "127.0.0.4"};
    no_secret.send_frame("CONNECT beta");
    CHECK(no_secret.read_frame() == "ERROR: Not authorized");
    std::this_thread::sleep_for(600ms);
    TestClient beta{server.port(), 0, "127.0.0.3"};
    beta.send_frame("CONNECT beta " + beta_secret);
    CHECK(beta.read_frame() == "RESTORED beta");
    CHECK(beta.read_frame() == "news");
    std::vector<std::string> beta_got;
    for (std::size_t i = 0; i < beta_expected.size(); ++i) {
        beta_got.push_back(beta.read_frame().value_or("(nothing)"));
    }
    CHECK(beta_got == beta_expected);

    TestClient gone{server.port()};  // removed by its DISCONNECT: a new client now
    gone.send_frame("CONNECT gone");
    CHECK(gone.read_frame() == "OK: Conn accepted");

    // The hog, connected at the stop, comes back as lost with what it had not been sent.
    TestClient hog{server.port()};
    hog.send_frame("CONNECT hog");
    CHECK(hog.read_frame() == "RESTORED hog");
    CHECK(hog.read_frame() == "bulk");
    hog.barrier();  // the restored queue comes before the probe
    std::vector<long> restored;
    while (hog.frames_waiting() > 0) {
        restored.push_back(number_in(*hog.read_frame(), 'b'));
    }
    std::vector<long> old;
    for (const std::string& frame : hog_old_frames) {
        old.push_back(number_in(frame, 'b'));
    }
    INFO("old connection: ", old.size(), " frames; restored: ", restored.size(), " frames from b",
         restored.empty() ? 0 : restored.front());
    for (std::size_t i = 0; i < old.size(); ++i) {
        REQUIRE(old[i] == static_cast<long>(i) + 1);
    }
    REQUIRE(!restored.empty());
    for (std::size_t i = 1; i < restored.size(); ++i) {
        REQUIRE(restored[i] == restored[i - 1] + 1);
    }
    CHECK(restored.back() == kBulk);
    // Nothing lost, none twice: what the old connection got, then what was kept. Fails today:
    // the write in flight at the stop is neither sent nor kept (the test below shows how much).
    CHECK(restored.front() == static_cast<long>(old.size()) + 1);
    CHECK(messages ==
          static_cast<long>(alpha_expected.size() + beta_expected.size() + restored.size()));
}

// The writer's next chunk of a slow reader's queue can be far larger than the socket buffers
// (up to half of --max-queue): messages in it that the kernel has not taken were not sent.
TEST_CASE("at SIGTERM a slow reader's messages still in the write in flight are kept") {
    TempDir dir;
    const auto options = with_store(dir.data(), {"--max-queue", "64000000", "--write-timeout", "0",
                                                 "--slow-consumer-grace", "0"});
    constexpr int kBulk = 30'000;
    std::vector<std::string> old_frames;
    {
        ServerProcess server{options};
        TestClient reader{server.port(), 4096};
        reader.connect_as("reader");
        reader.send_frame("SUBSCRIBE bulk");
        reader.barrier();
        TestClient publisher{server.port()};
        publisher.connect_as("publisher");
        std::vector<std::string> commands;
        for (int i = 1; i <= kBulk; ++i) {
            commands.push_back("PUBLISH bulk b" + std::to_string(i) + " " + std::string(300, 'b'));
        }
        publish_all(publisher, commands);
        // Reading some (1.8 MB, more than a third of the socket buffers) ends the first write;
        // the next one takes the whole backlog, of which the kernel takes only what fits.
        for (int i = 0; i < 6000; ++i) {
            old_frames.push_back(reader.read_frame().value_or("(nothing)"));
            if (i % 1000 == 999) {
                std::this_thread::sleep_for(10ms);
            }
        }
        std::this_thread::sleep_for(100ms);
        server.send_signal(SIGTERM);
        REQUIRE(server.wait_exit() == 0);
        for (std::string& frame : read_all(reader, 500ms)) {
            old_frames.push_back(std::move(frame));
        }
    }
    ServerProcess server{options};
    TestClient reader{server.port()};
    reader.send_frame("CONNECT reader");
    CHECK(reader.read_frame() == "RESTORED reader");
    CHECK(reader.read_frame() == "bulk");
    reader.barrier();
    std::vector<long> restored;
    while (reader.frames_waiting() > 0) {
        restored.push_back(number_in(*reader.read_frame(), 'b'));
    }
    for (std::size_t i = 0; i < old_frames.size(); ++i) {
        REQUIRE(number_in(old_frames[i], 'b') == static_cast<long>(i) + 1);
    }
    INFO("received before the stop: b1..b", old_frames.size(), "; restored: ", restored.size(),
         " messages from b", restored.empty() ? 0 : restored.front(), " (published: b1..b", kBulk,
         ")");
    const long next = static_cast<long>(old_frames.size()) + 1;
    CHECK((next > kBulk || (!restored.empty() && restored.front() == next)));
    CHECK(old_frames.size() + restored.size() == kBulk);
}

// A crash right after a restore must not deliver the restored messages a second time: the
// queue goes out only once the store has committed its hand-over.
TEST_CASE("messages a restoring client received do not come back after a crash") {
    TempDir dir;
    const auto options = with_store(dir.data());
    std::optional<ServerProcess> server{std::in_place, options};
    make_lost(*server, "sub", "", {"t"});
    TestClient publisher{server->port()};
    publisher.connect_as("publisher");
    std::vector<std::string> commands;
    for (int i = 1; i <= 100; ++i) {
        commands.push_back("PUBLISH t m" + std::to_string(i));
    }
    publish_all(publisher, commands);
    std::this_thread::sleep_for(kSettle);  // the messages are committed
    TestClient sub{server->port()};
    sub.send_frame("CONNECT sub");
    REQUIRE(sub.read_frame() == "RESTORED sub");
    REQUIRE(sub.read_frame() == "t");
    for (int i = 1; i <= 100; ++i) {
        REQUIRE(sub.read_frame() == "t m" + std::to_string(i));
    }
    server->send_signal(SIGKILL);
    REQUIRE(server->wait_exit() == 128 + SIGKILL);
    CHECK(integrity_of(dir.database()) == "ok");

    server.emplace(options);
    TestClient again{server->port()};
    again.send_frame("CONNECT sub");
    CHECK(again.read_frame() == "RESTORED sub");
    CHECK(again.read_frame() == "t");
    again.barrier();
    std::vector<std::string> twice;
    while (again.frames_waiting() > 0) {
        twice.push_back(*again.read_frame());
    }
    INFO("delivered again: ", twice.size(), " message(s), from '",
         twice.empty() ? "" : twice.front(), "'");
    CHECK(twice.empty());
}

// Each refusal: exit code 1 before the server listens, a message that says what is wrong, and
// every file of the store as it was (the lock file aside: it holds the pid of its last user).
TEST_CASE("a store the server cannot use stops it at start, untouched") {
    TempDir dir;
    make_store(dir);
    std::string expected_message;
    SUBCASE("a corrupt file: garbage") {
        std::string garbage;
        for (int i = 0; i < 16384; ++i) {
            garbage += static_cast<char>((i * 7919 + 13) % 251);
        }
        write_file(dir.database(), garbage);
        expected_message = "not a readable SQLite database";
    }
    SUBCASE("a corrupt file: a sound header, damaged pages") {
        std::string bytes = file_bytes(dir.database());
        REQUIRE(bytes.size() > 8192);
        for (std::size_t i = 4096; i < bytes.size(); ++i) {
            bytes[i] = static_cast<char>(0xa5 ^ (i & 0xff));
        }
        write_file(dir.database(), bytes);
        expected_message = "cannot read the store: database disk image is malformed";
    }
    SUBCASE("a damaged record in a store not in WAL mode") {
        // Found by the second review: the journal mode was set before the records were read,
        // so a store refused while loading had its header rewritten.
        Database db{dir.database(), false};
        CHECK(db.query("PRAGMA journal_mode = DELETE") == "delete");
        CHECK(db.query("UPDATE clients SET secret = x'0102' WHERE rowid = "
                       "(SELECT min(rowid) FROM clients)")
                  .empty());
        expected_message = "is damaged";
    }
    SUBCASE("a newer schema") {
        CHECK(Database{dir.database(), false}.query("PRAGMA user_version = 99").empty());
        expected_message = "the store's schema version is 99, newer than this server's";
    }
    SUBCASE("a newer schema whose last writer left its WAL") {
        // Closing SQLite's connection would checkpoint the WAL into the file (review of issue
        // 11): the refusal must leave both as they are.
        sqlite3* db = nullptr;
        REQUIRE(sqlite3_open(dir.database().c_str(), &db) == SQLITE_OK);
        sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
        REQUIRE(sqlite3_exec(db,
                             "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0; "
                             "PRAGMA user_version = 2; DELETE FROM messages;",
                             nullptr, nullptr, nullptr) == SQLITE_OK);
        sqlite3_close(db);
        const fs::path wal = dir.database().string() + "-wal";
        REQUIRE(fs::file_size(wal) > 0);
        const std::string db_before = file_bytes(dir.database());
        const std::string wal_before = file_bytes(wal);
        const RefusedStart start = start_refused(dir.data());
        INFO(start.output);
        CHECK(start.exit_code == 1);
        CHECK(start.output.find("schema version is 2, newer") != std::string::npos);
        CHECK(file_bytes(dir.database()) == db_before);
        CHECK(file_bytes(wal) == wal_before);
        return;
    }
    SUBCASE("a database file the server cannot write") {
        std::string program = binary_path("PUBSUBX_SERVER");
        std::vector<std::string> args{"0", "--data-dir", dir.data().string()};
        fs::remove(dir.data() / "pubsubx.lock");
        if (geteuid() == 0) {
            // Mode bits do not stop root: the server runs as nobody, in a directory it may
            // write, on a root-owned database it may only read.
            if (!fs::exists("/usr/bin/setpriv")) {
                WARN_MESSAGE(false, "setpriv is missing: the read-only file case is not run");
                return;
            }
            fs::permissions(dir.data(), fs::perms{0777});
            fs::permissions(dir.database(), fs::perms{0644});
            args.insert(args.begin(),
                        {"--reuid=65534", "--regid=65534", "--clear-groups", program});
            program = "/usr/bin/setpriv";
        } else {
            fs::permissions(dir.database(), fs::perms{0444});
        }
        const std::string before = file_bytes(dir.database());
        const RefusedStart start = start_refused(program, args);
        INFO(start.output);
        CHECK(start.exit_code == 1);
        CHECK(start.output.find("Cannot use the store: cannot write " + dir.database().string() +
                                " (read-only") != std::string::npos);
        CHECK(start.output.find("Server started") == std::string::npos);
        CHECK(file_bytes(dir.database()) == before);
        return;
    }
    SUBCASE("a --data-dir that is a regular file") {
        fs::remove_all(dir.data());
        write_file(dir.data(), "not a directory\n");
        const std::string before = file_bytes(dir.data());
        const RefusedStart start = start_refused(dir.data());
        INFO(start.output);
        CHECK(start.exit_code == 1);
        CHECK(start.output.find("Cannot use the store: cannot use --data-dir " +
                                dir.data().string()) != std::string::npos);
        CHECK(start.output.find("Server started") == std::string::npos);
        CHECK(fs::is_regular_file(dir.data()));
        CHECK(file_bytes(dir.data()) == before);
        return;
    }
    SUBCASE("a directory the server cannot write") {
        std::string program = binary_path("PUBSUBX_SERVER");
        std::vector<std::string> args{"0", "--data-dir", dir.data().string()};
        if (geteuid() == 0) {
            // Mode bits do not stop root: run the server as nobody on a root-owned 0755 dir.
            if (!fs::exists("/usr/bin/setpriv")) {
                WARN_MESSAGE(false, "setpriv is missing: the read-only case is not run as root");
                return;
            }
            fs::permissions(dir.data(), fs::perms{0755});
            args.insert(args.begin(),
                        {"--reuid=65534", "--regid=65534", "--clear-groups", program});
            program = "/usr/bin/setpriv";
        } else {
            fs::permissions(dir.data(), fs::perms{0555});
        }
        const auto before = files_in(dir.data());
        const RefusedStart start = start_refused(program, args);
        INFO(start.output);
        CHECK(start.exit_code == 1);
        CHECK(start.output.find("Cannot use the store: cannot write in --data-dir " +
                                dir.data().string()) != std::string::npos);
        CHECK(start.output.find("Permission denied") != std::string::npos);
        CHECK(files_in(dir.data()) == before);
        return;
    }
    SUBCASE("a second server on the same directory") {
        ServerProcess first{with_store(dir.data())};
        const auto before = files_in(dir.data());
        const RefusedStart second = start_refused(dir.data());
        INFO(second.output);
        CHECK(second.exit_code == 1);
        CHECK(second.output.find("Cannot use the store: --data-dir " + dir.data().string() +
                                 " is in use by another pubsubx-server (pid " +
                                 std::to_string(first.pid()) + ")") != std::string::npos);
        CHECK(files_in(dir.data()) == before);  // the lock file still names the first server
        // The first server still serves its store.
        TestClient kept{first.port()};
        kept.send_frame("CONNECT kept");
        CHECK(kept.read_frame() == "RESTORED kept");
        CHECK(kept.read_frame() == "k");
        CHECK(number_in(kept.read_frame().value_or(""), 'n') == 1);
        return;
    }
    auto before = files_in(dir.data());
    before.erase("pubsubx.lock");
    const RefusedStart start = start_refused(dir.data());
    INFO(start.output);
    CHECK(start.exit_code == 1);
    CHECK(start.output.find("Cannot use the store: ") != std::string::npos);
    CHECK(start.output.find(expected_message) != std::string::npos);
    CHECK(start.output.find("Server started") == std::string::npos);
    auto after = files_in(dir.data());
    after.erase("pubsubx.lock");
    CHECK(after.at("pubsubx.db") == before.at("pubsubx.db"));
    CHECK(after == before);
}

TEST_CASE("a full disk: one line, the broker serves on, and writing resumes when space returns") {
    TempDir dir;
    const auto options = with_store(dir.data(), {"--max-queue", "64000000"});
    {
        ServerProcess server{options};
        make_lost(server, "victim", "", {"v"});
        server.send_signal(SIGTERM);
        REQUIRE(server.wait_exit() == 0);
    }
    const std::uint64_t limit = fs::file_size(dir.database()) + 512 * 1024;
    ServerProcess server{options, ChildLimits::file_size_at(limit)};
    TestClient watcher{server.port()};
    watcher.connect_as("watcher");
    watcher.send_frame("SUBSCRIBE w");
    watcher.barrier();
    TestClient publisher{server.port()};
    publisher.connect_as("publisher");
    int published = 0;
    const auto publish_to_victim = [&](int count) {
        std::vector<std::string> commands;
        for (int i = 0; i < count; ++i) {
            commands.push_back("PUBLISH v n" + std::to_string(++published) + " " +
                               std::string(1000, 'v'));
        }
        publish_all(publisher, commands);
    };
    bool full = false;
    for (int round = 0; round < 100 && !full; ++round) {
        publish_to_victim(200);
        full = server.wait_for_output("Store: cannot write (", 50ms);
    }
    REQUIRE_MESSAGE(full, "no 'Store: cannot write' after ", published, " messages of 1 kB");
    const std::size_t full_at = server.output().find("Store: cannot write (");
    INFO(server.output().substr(full_at, server.output().find('\n', full_at) - full_at));

    // The broker serves on: a connected subscriber receives, the victim's queue grows.
    publisher.send_frame("PUBLISH w still served");
    CHECK(watcher.read_frame() == "w still served");
    publish_to_victim(100);
    std::this_thread::sleep_for(300ms);
    server.send_signal(SIGUSR1);
    CHECK(server.wait_for_output("Counters: "));
    CHECK(server.output().find("store_failed_commits=0 ") == std::string::npos);
    // One line for the episode, however many commits fail.
    CHECK(server.output().find("Store: cannot write (", full_at + 1) == std::string::npos);

    const rlimit unlimited{RLIM_INFINITY, RLIM_INFINITY};
    REQUIRE(prlimit(server.pid(), RLIMIT_FSIZE, &unlimited, nullptr) == 0);
    CHECK(server.wait_for_output("Store: writing again after ", 5s));
    const int raised_after = published;
    publish_to_victim(100);
    std::this_thread::sleep_for(kSettle);
    server.send_signal(SIGKILL);
    REQUIRE(server.wait_exit() == 128 + SIGKILL);
    CHECK(integrity_of(dir.database()) == "ok");

    ServerProcess again{options};
    TestClient victim{again.port()};
    victim.send_frame("CONNECT victim");
    CHECK(victim.read_frame() == "RESTORED victim");
    CHECK(victim.read_frame() == "v");
    victim.barrier();
    std::vector<long> restored;
    while (victim.frames_waiting() > 0) {
        restored.push_back(number_in(*victim.read_frame(), 'n'));
    }
    INFO("published n1..n", published, " (the limit raised after n", raised_after,
         "); restored: ", restored.size(), " messages");
    // What came after the raise is there, as the end of an unbroken run...
    REQUIRE(restored.size() >= static_cast<std::size_t>(published - raised_after));
    CHECK(restored.back() == published);
    for (std::size_t i = 1; i < restored.size(); ++i) {
        REQUIRE(restored[i] == restored[i - 1] + 1);
    }
    // ...and so is what waited while the disk was full: nothing was lost.
    CHECK(restored.front() == 1);
}

TEST_CASE("secrets are stored as salted digests, never as themselves") {
    TempDir dir;
    const std::string secret = "Zq7-distinctive-S3cret-4471";
    const auto options = with_store(dir.data());
    {
        ServerProcess server{options};
        make_lost(server, "keeper", secret, {"s"});
        make_lost(server, "twin", secret, {"s"});
        TestClient publisher{server.port()};
        publisher.connect_as("publisher");
        publish_all(publisher, {"PUBLISH s kept"});
        std::this_thread::sleep_for(kSettle);
        // While it runs, the write-ahead log holds the latest commits.
        CHECK(files_containing(dir.data(), secret).empty());
        CHECK(!files_containing(dir.data(), "keeper").empty());  // the search does find names
        server.send_signal(SIGTERM);
        REQUIRE(server.wait_exit() == 0);
    }
    CHECK(files_containing(dir.data(), secret).empty());
    CHECK(!files_containing(dir.data(), "keeper").empty());
    {
        // A digest per client, salted: the same secret gives two different ones.
        Database db{dir.database(), true};
        CHECK(db.query("SELECT length(secret) FROM clients WHERE CAST(name AS TEXT) IN "
                       "('keeper', 'twin')") == "48\n48");
        CHECK(db.query("SELECT count(DISTINCT secret) FROM clients WHERE CAST(name AS TEXT) "
                       "IN ('keeper', 'twin')") == "2");
    }
    ServerProcess server{options};
    TestClient keeper{server.port()};
    keeper.send_frame("CONNECT keeper " + secret);
    CHECK(keeper.read_frame() == "RESTORED keeper");
    CHECK(keeper.read_frame() == "s");
    CHECK(keeper.read_frame() == "s kept");
}

namespace {

// The crash test's bookkeeping for one subscriber: what each publisher sent it, what it
// received, and the rules every message it receives must follow. Publisher p's k-th message to
// subscriber i carries p, k and g (p's own sequence over all its messages, in sending order),
// so that the test can tell where a commit cut each publisher's stream.
class CrashSubscriber {
  public:
    static constexpr int kPublishers = 2;

    explicit CrashSubscriber(int index) : name_("c" + std::to_string(index)) {}

    const std::string& name() const { return name_; }
    std::string subscriptions() const { return own("a") + " " + own("w/+"); }
    std::string own(const std::string& topic) const { return name_ + "/" + topic; }

    // The next message from publisher p, as a PUBLISH command, recorded as published.
    std::string next_message(int p, std::uint64_t g) {
        sent_[p].push_back(g);
        const std::uint64_t k = sent_[p].size();
        return "PUBLISH " + topic_of(p, k) + " " + data_of(p, g, k);
    }
    std::uint64_t published(int p) const { return sent_[p].size(); }
    std::uint64_t g_of(int p, std::uint64_t k) const { return sent_[p][k - 1]; }

    // A frame received; what breaks a rule goes to `problems`.
    void received(const std::string& frame, std::vector<std::string>& problems) {
        std::istringstream fields{frame};
        std::string topic, p_field, g_field, k_field, pad;
        fields >> topic >> p_field >> g_field >> k_field >> pad;
        const auto complain = [&](const std::string& what) {
            problems.push_back(name_ + " got '" + frame.substr(0, 60) + "': " + what);
        };
        if (p_field.size() != 2 || p_field[0] != 'p' || g_field.empty() || k_field.empty() ||
            (p_field[1] != '0' && p_field[1] != '1')) {
            complain("not a message of this test");
            return;
        }
        const int p = p_field[1] - '0';
        const std::uint64_t g = std::stoull(g_field.substr(1));
        const std::uint64_t k = std::stoull(k_field.substr(1));
        Stream& stream = streams_[p];
        if (k == 0 || k > published(p) || g_of(p, k) != g ||
            frame != topic_of(p, k) + " " + data_of(p, g, k)) {
            complain("never published so");
            return;
        }
        if (k <= stream.last_received) {
            complain("after k" + std::to_string(stream.last_received) + ": twice or out of order");
        }
        if (stream.expect_next && k != *stream.expect_next) {
            complain("k" + std::to_string(*stream.expect_next) + " expected: a gap");
        }
        if (stream.first_at_most && k > *stream.first_at_most) {
            complain("the first after a loss, but k" + std::to_string(*stream.first_at_most) +
                     " was surely queued while lost: a gap");
        }
        stream.first_at_most.reset();
        stream.expect_next = k + 1;
        stream.last_received = std::max(stream.last_received, k);
        stream.restored.push_back(k);
    }

    // The connection ended abruptly and the server said the client is lost: what is published
    // from now on is surely queued for it; what it had not read may be gone.
    void lost() {
        connected_ = false;
        for (int p = 0; p < kPublishers; ++p) {
            streams_[p].sure_from = published(p) + 1;
            streams_[p].first_at_most = streams_[p].sure_from;
            streams_[p].expect_next.reset();
        }
    }
    // A new client of that name: it gets what is published from now on.
    void subscribed_anew() {
        for (int p = 0; p < kPublishers; ++p) {
            streams_[p].first_at_most.reset();
            streams_[p].expect_next = published(p) + 1;
        }
        connected_ = true;
    }

    // A restore just handed the queue over (the messages since start_restore).
    void handed_over() { connected_ = true; }

    // The server was killed: a connected client's live messages are not kept, so its next
    // message may come from anywhere later.
    void killed() {
        lost_at_kill_ = !connected_;
        connected_ = false;
        for (Stream& stream : streams_) {
            stream.expect_next.reset();
            if (!lost_at_kill_) {
                stream.first_at_most.reset();
            }
        }
    }
    bool lost_at_kill() const { return lost_at_kill_; }
    void start_restore() {
        for (Stream& stream : streams_) {
            stream.restored.clear();
        }
    }
    const std::vector<std::uint64_t>& restored(int p) const { return streams_[p].restored; }
    std::uint64_t sure_from(int p) const { return streams_[p].sure_from; }

    // After the messages restored from the store: live ones start with the next publish.
    void restore_done(std::vector<std::string>& problems, bool everything_committed) {
        for (int p = 0; p < kPublishers; ++p) {
            Stream& stream = streams_[p];
            if (lost_at_kill_ && everything_committed && published(p) >= stream.sure_from &&
                (stream.restored.empty() || stream.restored.back() != published(p))) {
                problems.push_back(
                    name_ + ": from publisher " + std::to_string(p) + ", k" +
                    std::to_string(published(p)) +
                    " was committed long before the kill, but the restore ended at k" +
                    std::to_string(stream.restored.empty() ? 0 : stream.restored.back()));
            }
            stream.first_at_most.reset();
            stream.expect_next = published(p) + 1;
        }
        connected_ = true;
    }

  private:
    struct Stream {
        std::uint64_t last_received = 0;
        std::optional<std::uint64_t> expect_next = 1;  // within a connection: no gap
        std::optional<std::uint64_t> first_at_most;    // the first after a loss
        std::uint64_t sure_from = 0;
        std::vector<std::uint64_t> restored;  // since start_restore
    };

    // Odd messages reach the subscriber through its exact topic, even ones through its filter.
    std::string topic_of(int p, std::uint64_t k) const {
        return k % 2 == 1 ? own("a") : own("w/p" + std::to_string(p));
    }
    static std::string data_of(int p, std::uint64_t g, std::uint64_t k) {
        return "p" + std::to_string(p) + " g" + std::to_string(g) + " k" + std::to_string(k) + " " +
               std::string(1 + (g * 37) % 181, 'x');
    }

    std::string name_;
    std::array<std::vector<std::uint64_t>, kPublishers> sent_;  // g of each k, from k = 1
    std::array<Stream, kPublishers> streams_;
    bool connected_ = false;
    bool lost_at_kill_ = false;
};

std::uint64_t environment_number(const char* name, std::uint64_t otherwise) {
    const char* text = std::getenv(name);
    return text != nullptr && *text != '\0' ? std::stoull(text) : otherwise;
}

// One round of the crash test: a server on the store the last round left behind.
class CrashRound {
  public:
    CrashRound(ServerProcess& server, std::vector<CrashSubscriber>& subscribers, int round,
               std::vector<std::string>& problems)
        : server_(server),
          subscribers_(subscribers),
          round_(round),
          problems_(problems),
          connections_(subscribers.size()) {}

    // What the round did, with the milliseconds since it started, to explain a failure.
    void note(const std::string& event) {
        const auto elapsed =
            std::chrono::duration<double, std::milli>(SteadyClock::now() - started_).count();
        std::ostringstream line;
        line.precision(1);
        line << std::fixed << elapsed << " ms: " << event;
        events_.push_back(line.str());
    }
    const std::vector<std::string>& events() const { return events_; }

    // Round 0, or a store the kill left empty: every subscriber is new.
    void subscribe_all() {
        for (std::size_t i = 0; i < subscribers_.size(); ++i) {
            CrashSubscriber& subscriber = subscribers_[i];
            subscriber.subscribed_anew();
            auto connection = std::make_unique<TestClient>(server_.port());
            connection->connect_as(subscriber.name());
            connection->send_frame("SUBSCRIBE " + subscriber.own("a"));
            connection->send_frame("SUBSCRIBE " + subscriber.own("w/+"));
            end_marker(*connection, subscriber);
            connections_[i] = std::move(connection);
        }
    }

    // After a kill: every subscriber comes back, with what the store kept of its queue.
    void restore_all(bool everything_committed) {
        for (std::size_t i = 0; i < subscribers_.size(); ++i) {
            CrashSubscriber& subscriber = subscribers_[i];
            subscriber.start_restore();
            connections_[i] = reconnect(subscriber);
            subscriber.restore_done(problems_, everything_committed);
            subscriber.handed_over();
            restored_messages_ += subscriber.restored(0).size() + subscriber.restored(1).size();
            note(subscriber.name() + (subscriber.lost_at_kill() ? " (lost at the kill)" : "") +
                 " restored p0 " + range_text(subscriber.restored(0)) + ", p1 " +
                 range_text(subscriber.restored(1)));
        }
        check_one_cut();
    }

    void connect_publishers() {
        for (int p = 0; p < CrashSubscriber::kPublishers; ++p) {
            publishers_[p] = std::make_unique<TestClient>(server_.port());
            publishers_[p]->connect_as("r" + std::to_string(round_) + "-p" + std::to_string(p));
        }
    }

    // One burst of `count` messages from publisher p, round robin over the subscribers.
    void flood(int p, int count, std::uint64_t& g) {
        std::string bytes;
        for (int n = 0; n < count; ++n) {
            CrashSubscriber& subscriber = subscribers_[g % subscribers_.size()];
            pubsubx::append_frame(bytes, subscriber.next_message(p, g));
            ++g;
        }
        publishers_[p]->send_raw(bytes);
        note("p" + std::to_string(p) + " sent up to g" + std::to_string(g - 1));
    }

    // What has arrived for the connected subscribers.
    void read_connected() {
        for (std::size_t i = 0; i < subscribers_.size(); ++i) {
            if (connections_[i] != nullptr) {
                while (auto frame = connections_[i]->read_frame(1ms)) {
                    subscribers_[i].received(*frame, problems_);
                }
            }
        }
    }

    // The connection ends without DISCONNECT (a reset, or a FIN).
    void drop(std::size_t i, bool reset) {
        const std::size_t mark = server_.output().size();
        connections_[i]->drop(reset);
        connections_[i].reset();
        if (!wait_logged_after(server_, mark, "Client '" + subscribers_[i].name() + "' lost")) {
            throw std::runtime_error("the server did not log that " + subscribers_[i].name() +
                                     " is lost");
        }
        subscribers_[i].lost();
        note(subscribers_[i].name() + " dropped (" + (reset ? "reset" : "FIN") +
             "), lost; sure from p0 k" + std::to_string(subscribers_[i].sure_from(0)) + ", p1 k" +
             std::to_string(subscribers_[i].sure_from(1)));
    }

    // A lost subscriber reconnects and reads what the broker kept for it.
    void come_back(std::size_t i) {
        subscribers_[i].start_restore();
        connections_[i] = reconnect(subscribers_[i]);
        subscribers_[i].handed_over();
        note(subscribers_[i].name() + " came back with p0 " +
             range_text(subscribers_[i].restored(0)) + ", p1 " +
             range_text(subscribers_[i].restored(1)));
    }

    bool is_connected(std::size_t i) const { return connections_[i] != nullptr; }

    // Every message published so far was processed by the server.
    void sync_publishers() {
        for (auto& publisher : publishers_) {
            publisher->barrier();
        }
    }

    void killed() {
        note("killed");
        for (std::size_t i = 0; i < subscribers_.size(); ++i) {
            connections_[i].reset();
            subscribers_[i].killed();
        }
    }

    std::size_t restored_messages() const { return restored_messages_; }

  private:
    // CONNECT, RESTORED with the topic list, then what the broker kept: every frame up to a
    // marker the subscriber publishes to itself.
    std::unique_ptr<TestClient> reconnect(CrashSubscriber& subscriber) {
        auto connection = std::make_unique<TestClient>(server_.port());
        connection->send_frame("CONNECT " + subscriber.name());
        const auto restored = connection->read_frame();
        const auto topics = connection->read_frame();
        if (restored != "RESTORED " + subscriber.name() || topics != subscriber.subscriptions()) {
            problems_.push_back(subscriber.name() + " reconnected: '" +
                                restored.value_or("(nothing)") + "', '" +
                                topics.value_or("(nothing)") + "'");
            return connection;
        }
        end_marker(*connection, subscriber);
        return connection;
    }

    void end_marker(TestClient& connection, CrashSubscriber& subscriber) {
        const std::string marker = "end r" + std::to_string(round_) + " " + std::to_string(++ends_);
        connection.send_frame("PUBLISH " + subscriber.own("a") + " " + marker);
        const auto before = read_until(connection, subscriber.own("a") + " " + marker);
        if (!before) {
            problems_.push_back(subscriber.name() + ": its marker did not come back");
            return;
        }
        for (const std::string& frame : *before) {
            subscriber.received(frame, problems_);
        }
    }

    // A commit takes every change the event loop made before it: the messages of a publisher
    // that the store kept for the clients lost at the kill end at one point of its stream.
    // Every message after the lost client's first sure one that came before the last one kept
    // (for any client) must have been kept too.
    void check_one_cut() {
        for (int p = 0; p < CrashSubscriber::kPublishers; ++p) {
            std::uint64_t last_kept_g = 0;
            bool any_kept = false;
            std::uint64_t first_missing_g = UINT64_MAX;
            std::string missing_name;
            for (const CrashSubscriber& subscriber : subscribers_) {
                if (!subscriber.lost_at_kill()) {
                    continue;
                }
                const auto& restored = subscriber.restored(p);
                if (!restored.empty()) {
                    any_kept = true;
                    last_kept_g = std::max(last_kept_g, subscriber.g_of(p, restored.back()));
                }
                const std::uint64_t missing =
                    std::max(restored.empty() ? 0 : restored.back() + 1, subscriber.sure_from(p));
                if (missing >= 1 && missing <= subscriber.published(p) &&
                    subscriber.g_of(p, missing) < first_missing_g) {
                    first_missing_g = subscriber.g_of(p, missing);
                    missing_name = subscriber.name() + " k" + std::to_string(missing);
                }
            }
            if (any_kept && first_missing_g < last_kept_g) {
                problems_.push_back("publisher " + std::to_string(p) + ": g" +
                                    std::to_string(first_missing_g) + " (" + missing_name +
                                    ") is missing, but the later g" + std::to_string(last_kept_g) +
                                    " was kept: a gap");
            }
        }
    }

    static std::string range_text(const std::vector<std::uint64_t>& ks) {
        return ks.empty() ? "none"
                          : "k" + std::to_string(ks.front()) + "..k" + std::to_string(ks.back());
    }

    ServerProcess& server_;
    std::vector<CrashSubscriber>& subscribers_;
    int round_;
    std::vector<std::string>& problems_;
    std::vector<std::unique_ptr<TestClient>> connections_;
    std::array<std::unique_ptr<TestClient>, CrashSubscriber::kPublishers> publishers_;
    int ends_ = 0;
    std::size_t restored_messages_ = 0;
    SteadyClock::time_point started_ = SteadyClock::now();
    std::vector<std::string> events_;
};

std::string joined(const std::vector<std::string>& lines, std::size_t at_most = 20) {
    std::string text;
    for (std::size_t i = 0; i < lines.size() && i < at_most; ++i) {
        text += "\n  " + lines[i];
    }
    if (lines.size() > at_most) {
        text += "\n  ... and " + std::to_string(lines.size() - at_most) + " more";
    }
    return text;
}

}  // namespace

// Rounds of: restart on the store the last kill left, every subscriber restores (its topic
// list, then what the store kept), two publishers flood, subscribers drop abruptly and come
// back, SIGKILL. Every message a subscriber receives must have been published to it, arrive
// once and in order, with no gap within a connection; after a loss, the first message must
// be at or before the first one surely queued while it was lost; what the store kept for the
// clients lost at a kill is, per publisher, everything up to one point of its stream (one
// commit); after a kill kSettle past the last change, nothing is missing; the file always
// passes integrity_check. PUBSUBX_CRASH_ROUNDS and PUBSUBX_CRASH_SEED change the number of
// rounds and replay a run's choices.
TEST_CASE("SIGKILL at random moments loses only what came after the last commit") {
    const std::uint64_t rounds = environment_number("PUBSUBX_CRASH_ROUNDS", 25);
    const std::uint64_t seed = environment_number("PUBSUBX_CRASH_SEED", std::random_device{}());
    INFO("PUBSUBX_CRASH_SEED=", seed, " PUBSUBX_CRASH_ROUNDS=", rounds);
    std::mt19937_64 random{seed};
    const auto chance = [&](double probability) {
        return std::uniform_real_distribution<double>{0, 1}(random) < probability;
    };
    const auto between = [&](int low, int high) {
        return std::uniform_int_distribution<int>{low, high}(random);
    };
    TempDir dir;
    const auto options = with_store(dir.data(), {"--max-queue", "0", "--max-total-queue", "0",
                                                 "--lost-timeout", "600", "--write-timeout", "0"});
    std::vector<CrashSubscriber> subscribers;
    for (int i = 0; i < 3; ++i) {
        subscribers.emplace_back(i);
    }
    std::uint64_t g[CrashSubscriber::kPublishers] = {1, 1};
    bool everything_committed = false;  // the last round waited kSettle before its kill
    std::vector<std::string> previous_events;
    for (std::uint64_t round = 0; round < rounds; ++round) {
        CAPTURE(round);
        std::vector<std::string> problems;
        ServerProcess server{options};
        CrashRound run{server, subscribers, static_cast<int>(round), problems};
        const auto [clients, messages] = loaded_counts(server.output());
        if (round == 0 || (clients == 0 && !everything_committed)) {
            // A kill during the first commit (the first write to a new WAL syncs it, and the
            // directory) leaves the store empty: a store as of its last commit, none.
            CHECK(messages <= 0);
            run.note("a new store");
            run.subscribe_all();
        } else {
            run.restore_all(everything_committed);
            // The subscribers, and the publishers of earlier rounds (lost at their kill).
            CHECK(clients >= 3);
            CHECK(clients <= static_cast<long>(3 + 2 * round));
            CHECK(messages == static_cast<long>(run.restored_messages()));
        }
        run.connect_publishers();

        // Publishers flood; subscribers read, drop and come back; then a kill, either at a
        // random moment of the flood, or well after it (then nothing may be missing).
        const bool kill_after_restore = round % 5 == 2;
        everything_committed = round % 4 == 3 && !kill_after_restore;
        const int bursts = between(3, 40);
        for (int burst = 0; burst < bursts; ++burst) {
            run.flood(burst % 2, between(20, 300), g[burst % 2]);
            if (chance(0.3)) {
                run.read_connected();
            }
            if (chance(0.25)) {
                const auto i = static_cast<std::size_t>(between(0, 2));
                if (run.is_connected(i)) {
                    run.read_connected();
                    run.drop(i, chance(0.5));
                } else {
                    run.come_back(i);
                }
            }
        }
        if (kill_after_restore) {
            // The restore hands the stored queue over; the kill comes before its commit may.
            for (std::size_t i = 0; i < subscribers.size(); ++i) {
                if (!run.is_connected(i)) {
                    run.come_back(i);
                    break;
                }
            }
        } else if (everything_committed) {
            run.sync_publishers();
            run.read_connected();
            std::this_thread::sleep_for(kSettle);
        } else if (chance(0.5)) {
            std::this_thread::sleep_for(std::chrono::microseconds{between(0, 3000)});
        }
        server.send_signal(SIGKILL);
        REQUIRE(server.wait_exit() == 128 + SIGKILL);
        run.killed();
        REQUIRE(integrity_of(dir.database()) == "ok");
        REQUIRE_MESSAGE(problems.empty(), "round ", round, ":", joined(problems),
                        "\nthe round before:", joined(previous_events, 100),
                        "\nthis round:", joined(run.events(), 100));
        previous_events = run.events();
    }
    // The last kill's store is checked too.
    std::vector<std::string> problems;
    ServerProcess server{options};
    CrashRound run{server, subscribers, static_cast<int>(rounds), problems};
    if (loaded_counts(server.output()).first != 0 || everything_committed) {
        run.restore_all(everything_committed);
        CHECK(loaded_counts(server.output()).second == static_cast<long>(run.restored_messages()));
    }
    CHECK_MESSAGE(problems.empty(), "after the last kill:", joined(problems),
                  "\nthe last round:", joined(previous_events, 100),
                  "\nthe restore:", joined(run.events(), 100));
}
