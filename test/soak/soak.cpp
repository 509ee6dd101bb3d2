// The fault soak: publishers and subscribers over real loopback TCP while a chaos driver kills
// subscribers (RST or FIN) and restores them by name, takes sessions over with their secret,
// tries wrong secrets, opens garbage and slowloris connections, and keeps one reader stalled.
// Rounds are checked exactly: every online or lost-then-restored subscriber must receive every
// message once and in order per publisher. The stalled reader's losses must equal what the
// server's counters say it dropped. Prints the figures; exits 1 on any failure.
//
// usage: soak [--seconds N] [--seed N] [--max-rss-mb N]    (PUBSUBX_SERVER names the server)
#include <array>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "support.hpp"

using namespace pubsubx::testing;

namespace {

constexpr int kPublishers = 3;
constexpr int kSubscribers = 6;
constexpr int kBatch = 40;  // messages per publisher per round
constexpr std::string_view kTopic = "soak";
// Padding makes the stalled reader's backlog outgrow the kernel's socket buffers quickly.
const std::string kPadding(200, '.');

struct Options {
    double seconds = 30;
    unsigned seed = 1;
    long max_rss_mb = 512;  // generous: the soak usually runs the ASan server
};

struct Figures {
    long rounds = 0, published = 0, checked = 0, kills_rst = 0, kills_fin = 0, restores = 0,
         takeovers = 0, wrong_secrets = 0, garbage = 0, slowloris = 0;
};

[[noreturn]] void fail(const std::string& what) {
    throw std::runtime_error(what);
}

// The sequence numbers expected next from each publisher; checks order and exactly-once.
class SequenceCheck {
  public:
    // Returns false for a message out of order, repeated or missing one before it.
    bool accept(std::string_view frame, bool gaps_allowed) {
        // frame: "soak p<i> <seq> <padding>"
        const std::size_t first = frame.find(' ');
        const std::size_t second = frame.find(' ', first + 1);
        if (frame.substr(0, first) != kTopic || second == std::string_view::npos) {
            return false;
        }
        const int publisher = std::stoi(std::string{frame.substr(first + 2, second - first - 2)});
        const long sequence = std::stol(std::string{frame.substr(second + 1)});
        long& next = next_.at(static_cast<std::size_t>(publisher));
        const bool ok = gaps_allowed ? sequence >= next : sequence == next;
        next = sequence + 1;
        ++received_;
        return ok;
    }
    long received() const { return received_; }

  private:
    std::array<long, kPublishers> next_{};
    long received_ = 0;
};

class Subscriber {
  public:
    Subscriber(std::string name, std::uint16_t port)
        : name_(std::move(name)), secret_("secret-of-" + name_), port_(port) {}

    const std::string& name() const { return name_; }
    const std::string& secret() const { return secret_; }
    bool online() const { return connection_ != nullptr; }

    void connect_fresh(int receive_buffer = 0) {
        connection_ = std::make_unique<TestClient>(port_, receive_buffer);
        connection_->send_frame("CONNECT " + name_ + " " + secret_);
        expect("OK: Conn accepted");
        connection_->send_frame("SUBSCRIBE " + std::string{kTopic});
        connection_->barrier();
    }
    void kill(bool reset) {
        connection_->drop(reset);
        connection_.reset();
    }
    // Resumes the session on a new connection (the old one, if still open, is taken over).
    void resume() {
        auto fresh = std::make_unique<TestClient>(port_);
        fresh->send_frame("CONNECT " + name_ + " " + secret_);
        if (connection_) {
            if (!connection_->wait_closed()) {
                fail(name_ + ": the taken-over connection was not closed");
            }
        }
        connection_ = std::move(fresh);
        expect("RESTORED " + name_);
        expect(std::string{kTopic});
    }
    // Reads `count` messages and checks each; the round's messages must all arrive.
    void receive(long count, Figures& figures) {
        for (long i = 0; i < count; ++i) {
            const auto frame = connection_->read_frame(10s);
            if (!frame) {
                fail(name_ + ": message " + std::to_string(i) + " of " + std::to_string(count) +
                     " did not arrive");
            }
            if (!check_.accept(*frame, false)) {
                fail(name_ + ": out of order or repeated: " + *frame);
            }
            ++figures.checked;
        }
    }
    TestClient& connection() { return *connection_; }
    SequenceCheck& check() { return check_; }
    std::unique_ptr<TestClient> take_connection() { return std::move(connection_); }

  private:
    void expect(const std::string& wanted) {
        const auto frame = connection_->read_frame(10s);
        if (frame != wanted) {
            fail(name_ + ": expected '" + wanted + "', got '" + frame.value_or("(nothing)") + "'");
        }
    }

    std::string name_, secret_;
    std::uint16_t port_;
    std::unique_ptr<TestClient> connection_;
    SequenceCheck check_;
};

std::map<std::string, long> parse_counters(const std::string& output) {
    std::map<std::string, long> counters;
    const std::size_t line_start = output.find("INFO: Shutting down; ");
    if (line_start == std::string::npos) {
        fail("the server printed no shutdown line with counters");
    }
    const std::string line = output.substr(line_start, output.find('\n', line_start) - line_start);
    for (std::size_t at = line.find('='); at != std::string::npos; at = line.find('=', at + 1)) {
        const std::size_t name_start = line.rfind(' ', at) + 1;
        counters[line.substr(name_start, at - name_start)] = std::stol(line.substr(at + 1));
    }
    return counters;
}

long peak_rss_kb(pid_t pid) {
    std::ifstream status{"/proc/" + std::to_string(pid) + "/status"};
    std::string key;
    long value = 0;
    while (status >> key) {
        if (key == "VmHWM:") {
            status >> value;
            return value;
        }
    }
    return -1;
}

// The soak's server keeps a durable store too, so that the chaos also runs through the
// store's side of every lifecycle edge (its writer thread under the sanitizers).
struct StoreDir {
    std::string path;
    StoreDir() {
        char pattern[] = "/tmp/pubsubx-soak-store-XXXXXX";
        const char* made = ::mkdtemp(pattern);
        if (made == nullptr) {
            throw std::runtime_error("mkdtemp failed");
        }
        path = made;
    }
    ~StoreDir() {
        std::error_code ignored;
        std::filesystem::remove_all(path, ignored);
    }
};

class Soak {
  public:
    explicit Soak(const Options& options)
        : options_(options),
          random_(options.seed),
          server_({"--lost-timeout", "3600", "--max-queue", "100000", "--max-total-queue",
                   "10000000", "--slow-consumer-grace", "0.5", "--write-timeout", "2",
                   "--connect-timeout", "0.5", "--max-connections", "200", "--data-dir",
                   store_dir_.path}) {}

    int run() {
        try {
            return run_rounds();
        } catch (const std::exception&) {
            const std::string& log = server_.output();
            std::fprintf(stderr, "server log (end):\n%s\n",
                         log.substr(log.size() > 3000 ? log.size() - 3000 : 0).c_str());
            throw;
        }
    }

  private:
    int run_rounds() {
        for (int i = 0; i < kPublishers; ++i) {
            publishers_.push_back(std::make_unique<TestClient>(server_.port()));
            publishers_.back()->connect_as("publisher-" + std::to_string(i));
        }
        stalled_ = std::make_unique<Subscriber>("stalled", server_.port());
        stalled_->connect_fresh(4096);  // and never read until the end
        for (int i = 0; i < kSubscribers; ++i) {
            subscribers_.push_back(
                std::make_unique<Subscriber>("subscriber-" + std::to_string(i), server_.port()));
            subscribers_.back()->connect_fresh();
        }
        const auto end = std::chrono::steady_clock::now() +
                         std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                             std::chrono::duration<double>(options_.seconds));
        while (std::chrono::steady_clock::now() < end) {
            round();
        }
        return finish();
    }

    void round() {
        Subscriber& victim = *subscribers_[pick(kSubscribers)];
        const int chaos = pick(6);
        if (chaos == 0 || chaos == 1) {
            const std::size_t log_size = server_.output().size();
            victim.kill(chaos == 0);
            ++(chaos == 0 ? figures_.kills_rst : figures_.kills_fin);
            // Messages published before the server sees the loss go to the dead socket, as on
            // any network; the exact check starts once the client is lost.
            if (!server_.wait_for_output("Client '" + victim.name() + "' lost", 10s, log_size)) {
                fail("the server did not notice that " + victim.name() + " was killed");
            }
        }
        if (chaos == 2) {
            garbage_connection();
        }
        if (chaos == 3) {
            slowloris_.push_back(std::make_unique<TestClient>(server_.port()));
            slowloris_.back()->send_raw("CONNECT slow");
            ++figures_.slowloris;
        }
        if (chaos == 4) {
            wrong_secret(victim);  // then the owner resumes with its secret
        }
        if (chaos == 4 || chaos == 5) {
            // Its old connection is open and has read everything: a takeover.
            victim.resume();
            ++figures_.takeovers;
        }
        publish_batch();
        if (!victim.online()) {
            victim.resume();
            ++figures_.restores;
        }
        for (auto& subscriber : subscribers_) {
            subscriber->receive(static_cast<long>(kBatch) * kPublishers, figures_);
        }
        close_finished_slowloris();
        server_.output();  // keeps the server's log pipe drained
        ++figures_.rounds;
    }

    int pick(int count) { return std::uniform_int_distribution<int>{0, count - 1}(random_); }

    void publish_batch() {
        for (int p = 0; p < kPublishers; ++p) {
            std::string frames;
            for (int i = 0; i < kBatch; ++i) {
                frames += "PUBLISH soak p" + std::to_string(p) + " " +
                          std::to_string(next_sequence_[static_cast<std::size_t>(p)]++) + " " +
                          kPadding + "\n\nx";
            }
            publishers_[static_cast<std::size_t>(p)]->send_raw(frames);
            figures_.published += kBatch;
        }
        for (auto& publisher : publishers_) {
            publisher->barrier();  // the server has fanned the batch out
        }
    }

    // Random bytes ending in a delimiter: never a valid first frame, so the server answers
    // with an error and closes (or the connect timeout closes it).
    void garbage_connection() {
        TestClient garbage{server_.port()};
        std::string bytes(1 + static_cast<std::size_t>(pick(200)), '\0');
        for (char& byte : bytes) {
            byte = static_cast<char>(pick(256));
        }
        bytes[0] = '#';  // not a C of CONNECT
        garbage.send_raw(bytes + "\n\nx");
        if (!garbage.wait_closed(5s)) {
            fail("a garbage connection was not closed");
        }
        ++figures_.garbage;
    }

    // From another address than the subscribers': the thief's back-off grows (its later tries
    // are refused unchecked), the owners resume from where they last connected, unhindered.
    void wrong_secret(Subscriber& victim) {
        TestClient thief{server_.port(), 0, "127.0.0.2"};
        thief.send_frame("CONNECT " + victim.name() + " not-" + victim.secret());
        const auto answer = thief.read_frame(10s);
        if (!answer || !answer->starts_with("ERROR: Not authorized") || !thief.wait_closed(10s)) {
            fail("a wrong secret for " + victim.name() + " was not refused");
        }
        ++figures_.wrong_secrets;
    }

    void close_finished_slowloris() {
        std::erase_if(slowloris_, [](const std::unique_ptr<TestClient>& client) {
            return client->wait_closed(0ms);
        });
    }

    // The stalled reader reads at last: what its old connection still holds, then its
    // restored queue. Whatever is missing must be what the server counted as dropped.
    long drain_stalled_reader() {
        std::unique_ptr<TestClient> old = stalled_->take_connection();
        while (auto frame = old->read_frame(2s)) {
            if (!stalled_->check().accept(*frame, true)) {
                fail("stalled reader: out of order or repeated: " + *frame);
            }
        }
        old->drop();  // if the server has not cut it off, it is lost now, with nothing in flight
        if (!server_.wait_for_output("Client 'stalled' lost", 5s)) {
            fail("the stalled reader did not become lost");
        }
        stalled_->resume();
        while (auto frame = stalled_->connection().read_frame(1s)) {
            if (!stalled_->check().accept(*frame, true)) {
                fail("stalled reader: out of order or repeated: " + *frame);
            }
        }
        return stalled_->check().received();
    }

    int finish() {
        for (auto& slow : slowloris_) {
            if (!slow->wait_closed(5s)) {
                fail("a slowloris connection was not closed by the connect timeout");
            }
        }
        const long stalled_received = drain_stalled_reader();
        const long peak_kb = peak_rss_kb(server_.pid());
        TestClient probe{server_.port()};
        probe.connect_as("probe");
        probe.barrier();  // the server is alive and serving
        server_.send_signal(SIGTERM);
        if (server_.wait_exit(10s) != 0) {
            fail("the server did not exit cleanly:\n" + server_.output());
        }
        auto counters = parse_counters(server_.output());
        const long missing = figures_.published - stalled_received;
        const long explained = counters["dropped"] + counters["frames_unsent_at_close"];
        print(stalled_received, missing, counters, peak_kb);
        if (missing != explained) {
            fail("the stalled reader missed " + std::to_string(missing) +
                 " messages but the counters explain " + std::to_string(explained));
        }
        if (counters["connect_timeouts"] < figures_.slowloris) {
            fail("fewer connect timeouts than slowloris connections");
        }
        if (peak_kb > options_.max_rss_mb * 1024) {
            fail("the server's peak RSS exceeded " + std::to_string(options_.max_rss_mb) + " MB");
        }
        return 0;
    }

    void print(long stalled_received, long missing, std::map<std::string, long>& counters,
               long peak_kb) {
        std::printf(
            "soak: %.0f s, seed %u, %d publishers, %d subscribers, 1 stalled reader, %ld rounds\n"
            "  messages published %ld, deliveries checked exactly once and in order %ld\n"
            "  chaos: kills %ld (RST %ld, FIN %ld) all restored, takeovers %ld, wrong secrets "
            "%ld, garbage connections %ld, slowloris %ld\n"
            "  stalled reader: expected %ld, received %ld, missing %ld = dropped %ld + unsent at "
            "close %ld (cut off as slow consumer %ld, write timeouts %ld)\n"
            "  server: lost %ld, restored %ld, taken over %ld, auth failures %ld, connect "
            "timeouts %ld, peak RSS %ld KB\n",
            options_.seconds, options_.seed, kPublishers, kSubscribers, figures_.rounds,
            figures_.published, figures_.checked, figures_.kills_rst + figures_.kills_fin,
            figures_.kills_rst, figures_.kills_fin, figures_.takeovers, figures_.wrong_secrets,
            figures_.garbage, figures_.slowloris, figures_.published, stalled_received, missing,
            counters["dropped"], counters["frames_unsent_at_close"], counters["slow_consumers_cut"],
            counters["write_timeouts"], counters["lost"], counters["restored"],
            counters["taken_over"], counters["auth_failures"], counters["connect_timeouts"],
            peak_kb);
    }

    Options options_;
    std::mt19937 random_;
    StoreDir store_dir_;  // before server_: the server runs in it
    ServerProcess server_;
    Figures figures_;
    std::vector<std::unique_ptr<TestClient>> publishers_;
    std::vector<std::unique_ptr<Subscriber>> subscribers_;
    std::unique_ptr<Subscriber> stalled_;
    std::vector<std::unique_ptr<TestClient>> slowloris_;
    std::array<long, kPublishers> next_sequence_{};
};

Options parse_options(int argc, char** argv) {
    Options options;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string flag = argv[i];
        if (flag == "--seconds") {
            options.seconds = std::stod(argv[i + 1]);
        } else if (flag == "--seed") {
            options.seed = static_cast<unsigned>(std::stoul(argv[i + 1]));
        } else if (flag == "--max-rss-mb") {
            options.max_rss_mb = std::stol(argv[i + 1]);
        } else {
            fail("unknown option " + flag + " (--seconds N, --seed N, --max-rss-mb N)");
        }
    }
    return options;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        Soak soak{parse_options(argc, argv)};
        return soak.run();
    } catch (const std::exception& failure) {
        std::fprintf(stderr, "soak FAILED: %s\n", failure.what());
        return 1;
    }
}
