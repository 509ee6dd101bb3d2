#include "scenarios.hpp"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <initializer_list>
#include <memory>
#include <sstream>
#include <stdexcept>

#include "bench_client.hpp"

namespace pubsubx::bench {

namespace {

using namespace std::chrono_literals;
using Clients = std::vector<std::unique_ptr<BenchClient>>;

constexpr auto kProbeInterval = 2ms;
constexpr auto kSetupTimeout = 30s;

}  // namespace

std::string fixed(double value, int decimals) {
    char text[64];
    std::snprintf(text, sizeof text, "%.*f", decimals, value);
    return text;
}

std::string rate_text(double per_second) {
    if (per_second >= 1e6) {
        return fixed(per_second / 1e6, 2) + " M msgs/s";
    }
    return fixed(per_second / 1e3, 1) + " k msgs/s";
}

namespace {

// Each scenario run gets its own topics and names, so that runs in one process never meet.
long next_run() {
    static long runs = 0;
    return ++runs;
}

std::string kib_text(long bytes) {
    std::string text = with_thousands(bytes / 1024);
    text.append(" KiB");
    return text;
}

Clients make_clients(Loop& loop, const Endpoint& endpoint, std::string_view role, int count) {
    const std::string prefix = std::string{role} + std::to_string(next_run()) + "-";
    Clients clients;
    for (int i = 0; i < count; ++i) {
        clients.push_back(std::make_unique<BenchClient>(loop, endpoint, bench_name(prefix, i)));
    }
    return clients;
}

// The first ERROR frame any of `groups` received: the broker refused a SUBSCRIBE or PUBLISH.
std::string broker_error(std::initializer_list<const Clients*> groups) {
    for (const Clients* clients : groups) {
        if (std::string error = first_error(*clients); !error.empty()) {
            return error;
        }
    }
    return {};
}

// Why a set-up failed, in the broker's own words when it refused something.
std::string setup_problem(const std::string& error) {
    if (error.empty()) {
        return "could not set up the clients";
    }
    std::string problem = "the broker refused: " + error;
    if (error.find("Too many subscriptions") != std::string::npos) {
        problem += " (start pubsubx-server with --max-topics 0)";
    }
    return problem;
}

// The protocol has no subscribe acknowledgement: publishers send warm-up probes until every
// subscriber has seen one from each of them. Probes are never counted. Gives up at once when
// the broker refuses anything (an ERROR frame), as the probes could then never arrive.
bool wait_until_subscribed(Loop& loop, Clients& publishers, const Clients& subscribers,
                           const std::string& topic, const std::vector<std::vector<bool>>& seen) {
    const auto all_seen = [&] {
        for (const auto& row : seen) {
            if (std::find(row.begin(), row.end(), false) != row.end()) {
                return false;
            }
        }
        return true;
    };
    const auto refused = [&] { return !broker_error({&publishers, &subscribers}).empty(); };
    const auto deadline = BenchClock::now() + kSetupTimeout;
    while (!all_seen()) {
        if (BenchClock::now() > deadline || refused()) {
            return false;
        }
        for (std::size_t p = 0; p < publishers.size(); ++p) {
            publishers[p]->link().send_frame("PUBLISH " + topic + " ~" + std::to_string(p) +
                                             ":0:0");
        }
        loop.run_until([&] { return all_seen() || refused(); }, kProbeInterval);
    }
    return true;
}

std::string barrier_topic(const BenchClient& client) {
    return client.name() + "-barrier";
}

}  // namespace

// The handler is cleared before returning: later probes must not reach this frame's locals.
bool barrier(Loop& loop, BenchClient& client) {
    const std::string topic = barrier_topic(client);
    bool back = false;
    client.on_message([&](std::string_view on, std::string_view) { back = back || on == topic; });
    client.link().queue_frame("SUBSCRIBE " + topic);
    const auto deadline = BenchClock::now() + kSetupTimeout;
    while (!back && client.errors() == 0 && BenchClock::now() < deadline) {
        client.link().send_frame("PUBLISH " + topic + " ~0:0:0");
        loop.run_until([&] { return back || client.errors() > 0; }, 20ms);
    }
    client.link().send_frame("UNSUBSCRIBE " + topic);
    client.on_message(nullptr);
    return back && client.errors() == 0;
}

void add(Result& result, std::string key, double value, std::string shown) {
    result.figures.push_back({std::move(key), value, std::move(shown)});
}

void fail(Result& result, const std::string& problem) {
    result.complete = false;
    if (result.problem.empty()) {
        result.problem = problem;
    }
}

std::string json_string(const std::string& text) {
    std::string out = "\"";
    for (const char c : text) {
        if (c == '"' || c == '\\') {
            out.push_back('\\');
        }
        out.push_back(c);
    }
    return out + "\"";
}

void print_json(const Result& result) {
    std::string line = "{\"scenario\":" + json_string(result.scenario) +
                       ",\"complete\":" + (result.complete ? "true" : "false");
    if (!result.problem.empty()) {
        line += ",\"problem\":" + json_string(result.problem);
    }
    for (const Figure& figure : result.figures) {
        char value[64];
        std::snprintf(value, sizeof value, "%.6g", figure.value);
        line += "," + json_string(figure.key) + ":" + value;
    }
    std::printf("%s}\n", line.c_str());
}

void print_table(const Result& result) {
    std::printf("%s%s\n", result.scenario.c_str(),
                result.complete ? "" : ("  ** INCOMPLETE: " + result.problem + " **").c_str());
    for (const Figure& figure : result.figures) {
        std::printf("  %-22s %s\n", figure.key.c_str(), figure.shown.c_str());
    }
}

void add_rates(Result& result, long published, double publish_seconds, long delivered,
               double seconds, std::size_t size) {
    add(result, "published_per_s", published / publish_seconds,
        rate_text(published / publish_seconds));
    add(result, "delivered_per_s", delivered / seconds, rate_text(delivered / seconds));
    const double megabytes = static_cast<double>(delivered) * static_cast<double>(size) / 1e6;
    add(result, "MB_per_s", megabytes / seconds, fixed(megabytes / seconds, 1) + " MB/s");
    add(result, "seconds", seconds, fixed(seconds, 3) + " s");
}

void add_checks(Result& result, long expected, const std::vector<OrderCheck>& checks) {
    long delivered = 0, out_of_order = 0, duplicates = 0, unrecognised = 0;
    for (const OrderCheck& check : checks) {
        delivered += check.delivered();
        out_of_order += check.out_of_order();
        duplicates += check.duplicates();
        unrecognised += check.unrecognised();
    }
    const long lost = expected - delivered;
    add(result, "delivered", static_cast<double>(delivered), with_thousands(delivered));
    add(result, "lost", static_cast<double>(lost), with_thousands(lost));
    add(result, "out_of_order", static_cast<double>(out_of_order), with_thousands(out_of_order));
    add(result, "duplicates", static_cast<double>(duplicates), with_thousands(duplicates));
    if (lost != 0 || out_of_order != 0 || duplicates != 0 || unrecognised != 0) {
        fail(result, "deliveries were lost, out of order, repeated or unrecognised");
    }
}

namespace {

long resident_bytes(pid_t pid) {
    std::ifstream status{"/proc/" + std::to_string(pid) + "/status"};
    std::string key;
    long kilobytes = -1;
    while (status >> key) {
        if (key == "VmRSS:") {
            status >> kilobytes;
            break;
        }
    }
    return kilobytes < 0 ? -1 : kilobytes * 1024;
}

void raise_file_limit() {
    rlimit limit{};
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        setrlimit(RLIMIT_NOFILE, &limit);
    }
}

// The listening socket's inode for `port`, from /proc/net/tcp and tcp6.
std::string listening_inode(std::uint16_t port) {
    for (const char* table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
        std::ifstream in{table};
        std::string line;
        std::getline(in, line);
        while (std::getline(in, line)) {
            std::istringstream fields{line};
            std::string slot, local, remote, state, queues, timer, retransmits, uid, timeout, inode;
            fields >> slot >> local >> remote >> state >> queues >> timer >> retransmits >> uid >>
                timeout >> inode;
            const auto colon = local.rfind(':');
            if (state == "0A" && colon != std::string::npos &&
                std::stoi(local.substr(colon + 1), nullptr, 16) == port) {
                return inode;
            }
        }
    }
    return {};
}

}  // namespace

pid_t find_listening_process(std::uint16_t port) {
    const std::string inode = listening_inode(port);
    if (inode.empty()) {
        return 0;
    }
    const std::string wanted = "socket:[" + inode + "]";
    DIR* proc = opendir("/proc");
    pid_t found = 0;
    while (dirent* entry = proc != nullptr ? readdir(proc) : nullptr) {
        const std::string pid = entry->d_name;
        if (pid.find_first_not_of("0123456789") != std::string::npos) {
            continue;
        }
        const std::string fd_dir = "/proc/" + pid + "/fd";
        DIR* fds = opendir(fd_dir.c_str());
        while (dirent* fd = fds != nullptr ? readdir(fds) : nullptr) {
            char target[64] = {};
            const std::string link = fd_dir + "/" + fd->d_name;
            if (readlink(link.c_str(), target, sizeof target - 1) > 0 && wanted == target) {
                found = static_cast<pid_t>(std::stol(pid));
            }
        }
        if (fds != nullptr) {
            closedir(fds);
        }
        if (found != 0) {
            break;
        }
    }
    if (proc != nullptr) {
        closedir(proc);
    }
    return found;
}

std::string expand(std::string_view pattern, long index, bool append) {
    const std::string number = std::to_string(index);
    std::string out;
    bool replaced = false;
    std::size_t at = 0;
    for (std::size_t found; (found = pattern.find("{i}", at)) != std::string_view::npos;
         at = found + 3) {
        out.append(pattern.substr(at, found - at)).append(number);
        replaced = true;
    }
    out.append(pattern.substr(at));
    if (!replaced && append) {
        out.append(number);
    }
    return out;
}

namespace {

std::string throughput_name(const ThroughputOptions& options) {
    const TopicOptions& topics = options.topics;
    std::string name = "throughput " + std::to_string(options.publishers) + "->" +
                       std::to_string(options.subscribers) + ", " + std::to_string(options.size) +
                       " B";
    if (topics.topics > 1 || !topics.pattern.empty()) {
        name += ", " + with_thousands(topics.topics) + " topic" + (topics.topics > 1 ? "s " : " ") +
                (topics.pattern.empty() ? "of the run's own" : topics.pattern);
    }
    if (!topics.filter.empty()) {
        name += ", subscribed to " + topics.filter;
    }
    if (topics.noise_filters > 0) {
        name +=
            ", " + with_thousands(topics.noise_filters) + " noise filters " + topics.noise_pattern;
    }
    if (options.sub_port != 0) {
        name += ", subscribers on port " + std::to_string(options.sub_port);
    }
    return name;
}

// The topics a throughput run publishes to, in order.
std::vector<std::string> publish_topics(const TopicOptions& options) {
    const std::string pattern =
        options.pattern.empty() ? bench_name("topic", next_run()) + (options.topics > 1 ? "/" : "")
                                : options.pattern;
    std::vector<std::string> topics;
    for (long i = 0; i < options.topics; ++i) {
        topics.push_back(expand(pattern, i, options.topics > 1));
    }
    return topics;
}

// A connection subscribed to `options.noise_filters` filters that match none of the published
// topics. Ready once a probe through a private topic came back after them (the protocol has no
// subscribe acknowledgement, but the broker handles a connection's frames in order).
struct Noise {
    Clients connection;
    long received = 0;  // messages that reached the noise filters: should stay 0
    double setup_seconds = 0;
};

bool set_up_noise(Loop& loop, const Common& common, const TopicOptions& options, Noise& noise) {
    const auto started = BenchClock::now();
    noise.connection = make_clients(loop, common.endpoint, "noise", 1);
    BenchClient& client = *noise.connection[0];
    for (long i = 0; i < options.noise_filters; ++i) {
        client.link().queue_frame("SUBSCRIBE " + expand(options.noise_pattern, i, false));
    }
    if (!connect_all(loop, noise.connection, kSetupTimeout) || !barrier(loop, client)) {
        return false;
    }
    // Probes of the barrier may still be on their way.
    client.on_message(
        [&noise, topic = barrier_topic(client)](std::string_view on, std::string_view) {
            noise.received += on != topic ? 1 : 0;
        });
    noise.setup_seconds = std::chrono::duration<double>(BenchClock::now() - started).count();
    return true;
}

}  // namespace

namespace {

// The broker's process, for its memory: --pid, or the one listening on the port; 0 if its
// /proc entry cannot be read.
pid_t broker_process(const Common& common) {
    const pid_t pid =
        common.broker_pid != 0 ? common.broker_pid : find_listening_process(common.endpoint.port);
    return pid != 0 && resident_bytes(pid) >= 0 ? pid : 0;
}

}  // namespace

Result run_throughput(const Common& common, const ThroughputOptions& options) {
    Result result;
    result.scenario = throughput_name(options);
    Loop loop;
    Noise noise;
    if (options.topics.noise_filters > 0 && !set_up_noise(loop, common, options.topics, noise)) {
        fail(result, "noise filters: " + setup_problem(broker_error({&noise.connection})));
        return result;
    }
    Endpoint subscriber_endpoint = common.endpoint;
    if (options.sub_port != 0) {
        subscriber_endpoint.port = options.sub_port;
    }
    Clients publishers = make_clients(loop, common.endpoint, "pub", options.publishers);
    Clients subscribers = make_clients(loop, subscriber_endpoint, "sub", options.subscribers);
    const std::vector<std::string> topics = publish_topics(options.topics);
    std::vector<OrderCheck> checks(subscribers.size(), OrderCheck{options.publishers});
    std::vector<std::vector<bool>> seen(
        subscribers.size(), std::vector<bool>(static_cast<std::size_t>(options.publishers)));
    for (std::size_t s = 0; s < subscribers.size(); ++s) {
        if (!options.topics.filter.empty()) {
            subscribers[s]->link().queue_frame("SUBSCRIBE " + options.topics.filter);
        }
        for (std::size_t t = 0; options.topics.filter.empty() && t < topics.size(); ++t) {
            subscribers[s]->link().queue_frame("SUBSCRIBE " + topics[t]);
        }
        subscribers[s]->on_message([&, s](std::string_view, std::string_view data) {
            const Payload payload = parse_payload(data);
            if (payload.probe) {
                if (payload.publisher >= 0 && payload.publisher < options.publishers) {
                    seen[s][static_cast<std::size_t>(payload.publisher)] = true;
                }
                return;
            }
            checks[s].accept(payload);
        });
    }
    // The probes go to the last topic: a subscriber of every topic subscribed to it last, so
    // its probe proves that all its SUBSCRIBEs were handled.
    if (!connect_all(loop, publishers, kSetupTimeout) ||
        !connect_all(loop, subscribers, kSetupTimeout) ||
        !wait_until_subscribed(loop, publishers, subscribers, topics.back(), seen)) {
        fail(result, setup_problem(broker_error({&publishers, &subscribers})));
        return result;
    }
    if (options.settle_ms > 0) {
        loop.run_until([] { return false; }, std::chrono::milliseconds{options.settle_ms});
    }

    const long per_publisher = options.messages / options.publishers;
    const long expected = per_publisher * options.publishers * options.subscribers;
    std::vector<long> sent(publishers.size(), 0);
    const long chunk = std::max(1L, options.window / 16);
    std::vector<std::string> prefixes;
    for (const std::string& topic : topics) {
        prefixes.push_back("PUBLISH " + topic + " ");
    }
    std::string frame;
    Progress progress{result.scenario};
    const auto started = BenchClock::now();
    BenchClock::time_point last_progress = started;
    long last_delivered = -1;
    for (;;) {
        long delivered = 0;
        for (const OrderCheck& check : checks) {
            delivered += check.delivered();
        }
        if (delivered >= expected) {
            break;
        }
        const auto now = BenchClock::now();
        if (delivered != last_delivered) {
            last_delivered = delivered;
            last_progress = now;
        } else if (now - last_progress > 5s || now - started > common.timeout) {
            const std::string error = broker_error({&publishers, &subscribers});
            fail(result, !error.empty()                   ? "the broker refused: " + error
                         : now - started > common.timeout ? "timed out"
                                                          : "stalled for 5 s");
            break;
        }
        progress.update(delivered, expected);
        for (std::size_t p = 0; p < publishers.size(); ++p) {
            long slowest = per_publisher;
            for (const OrderCheck& check : checks) {
                slowest = std::min(slowest, check.delivered_from(static_cast<int>(p)));
            }
            const long credit = std::min(slowest + options.window, per_publisher) - sent[p];
            if (credit < std::min(chunk, per_publisher - sent[p]) || credit <= 0) {
                continue;
            }
            Link& link = publishers[p]->link();
            for (long i = 0; i < credit; ++i) {
                frame.assign(prefixes[static_cast<std::size_t>(sent[p]) % prefixes.size()]);
                append_payload(frame, static_cast<int>(p), sent[p]++, 0, options.size);
                link.queue_frame(frame);
            }
            link.flush();
        }
        loop.poll(1ms);
    }
    const double seconds = std::chrono::duration<double>(BenchClock::now() - started).count();
    long published = 0;
    for (long count : sent) {
        published += count;
    }
    long delivered = 0;
    for (const OrderCheck& check : checks) {
        delivered += check.delivered();
    }
    add_rates(result, published, seconds, delivered, seconds, options.size);
    add_checks(result, expected, checks);
    if (options.topics.noise_filters > 0) {
        add(result, "noise_setup_s", noise.setup_seconds, fixed(noise.setup_seconds, 3) + " s");
        add(result, "noise_received", static_cast<double>(noise.received),
            with_thousands(noise.received));
        if (noise.received != 0) {
            fail(result, "messages reached the noise filters, which should match nothing");
        }
    }
    return result;
}

Result run_latency(const Common& common, const LatencyOptions& options) {
    Result result;
    result.scenario = "latency at " + with_thousands(options.rate) + " msgs/s, " +
                      std::to_string(options.size) + " B";
    Loop loop;
    Clients publishers = make_clients(loop, common.endpoint, "pub", 1);
    Clients subscribers = make_clients(loop, common.endpoint, "sub", options.subscribers);
    const std::string topic = bench_name("topic", next_run());
    std::vector<OrderCheck> checks(subscribers.size(), OrderCheck{1});
    std::vector<std::vector<bool>> seen(subscribers.size(), std::vector<bool>(1));
    std::vector<std::int64_t> samples;
    samples.reserve(static_cast<std::size_t>(options.messages * options.subscribers));
    for (std::size_t s = 0; s < subscribers.size(); ++s) {
        subscribers[s]->link().queue_frame("SUBSCRIBE " + topic);
        subscribers[s]->on_message([&, s](std::string_view, std::string_view data) {
            const std::int64_t received = now_ns();
            const Payload payload = parse_payload(data);
            if (payload.probe) {
                seen[s][0] = true;
                return;
            }
            checks[s].accept(payload);
            samples.push_back(received - payload.sent_ns);
        });
    }
    if (!connect_all(loop, publishers, kSetupTimeout) ||
        !connect_all(loop, subscribers, kSetupTimeout) ||
        !wait_until_subscribed(loop, publishers, subscribers, topic, seen)) {
        fail(result, setup_problem(broker_error({&publishers, &subscribers})));
        return result;
    }
    // Every message that is due is written at once in its own send(), its time taken just
    // before; the loop polls without sleeping so that its own wake-up does not add latency.
    const std::int64_t interval_ns = 1'000'000'000 / std::max(1L, options.rate);
    const std::int64_t start_ns = now_ns();
    const std::string prefix = "PUBLISH " + topic + " ";
    std::string frame;
    long sent = 0;
    Progress progress{result.scenario};
    const std::size_t expected = static_cast<std::size_t>(options.messages * options.subscribers);
    std::int64_t last_send_ns = start_ns;
    while (samples.size() < expected) {
        const std::int64_t now = now_ns();
        while (sent < options.messages && start_ns + sent * interval_ns <= now) {
            frame.assign(prefix);
            append_payload(frame, 0, sent++, now_ns(), options.size);
            publishers[0]->link().send_frame(frame);
            last_send_ns = now;
        }
        if (sent == options.messages && now - last_send_ns > 5'000'000'000) {
            fail(result, "messages did not arrive within 5 s of the last send");
            break;
        }
        progress.update(static_cast<long>(samples.size()), static_cast<long>(expected));
        loop.poll(0ms);
    }
    const double seconds = static_cast<double>(now_ns() - start_ns) / 1e9;
    std::sort(samples.begin(), samples.end());
    const auto percentile = [&](double fraction) {
        if (samples.empty()) {
            return 0.0;
        }
        const auto at =
            static_cast<std::size_t>(fraction * static_cast<double>(samples.size() - 1));
        return static_cast<double>(samples[at]) / 1e3;
    };
    for (const auto& [key, fraction] :
         std::vector<std::pair<std::string, double>>{{"p50_us", 0.5},
                                                     {"p90_us", 0.9},
                                                     {"p99_us", 0.99},
                                                     {"p99_9_us", 0.999},
                                                     {"max_us", 1.0}}) {
        add(result, key, percentile(fraction), fixed(percentile(fraction), 1) + " us");
    }
    add(result, "achieved_rate", sent / seconds, rate_text(sent / seconds));
    add_checks(result, options.messages * options.subscribers, checks);
    return result;
}

Result run_conns(const Common& common, const ConnsOptions& options) {
    Result result;
    result.scenario =
        "memory per idle subscribed connection (" + with_thousands(options.connections) + ")";
    const pid_t pid = broker_process(common);
    if (pid == 0) {
        fail(result, "cannot find the broker process (give --pid)");
        return result;
    }
    raise_file_limit();
    Loop loop;
    const long before = resident_bytes(pid);
    const std::string run = std::to_string(next_run());
    const std::string client_prefix = "c" + run + "-", topic_prefix = "t" + run + "-";
    Clients clients;
    Progress progress{"connections"};
    constexpr long kBatch = 256;  // handshakes in flight at once
    for (long first = 0; first < options.connections; first += kBatch) {
        Clients batch;
        for (long i = first; i < std::min(first + kBatch, options.connections); ++i) {
            batch.push_back(
                std::make_unique<BenchClient>(loop, common.endpoint, bench_name(client_prefix, i)));
            batch.back()->link().queue_frame("SUBSCRIBE " + bench_name(topic_prefix, i));
        }
        if (!connect_all(loop, batch, kSetupTimeout)) {
            fail(result, "connection " + std::to_string(first) + " and on were not accepted");
            return result;
        }
        std::move(batch.begin(), batch.end(), std::back_inserter(clients));
        progress.update(static_cast<long>(clients.size()), options.connections);
    }
    // Every connection is subscribed: a message to a sample of topics arrives.
    long sample_received = 0;
    const long step = std::max(1L, options.connections / 100);
    for (long i = 0; i < options.connections; i += step) {
        clients[static_cast<std::size_t>(i)]->on_message(
            [&](std::string_view, std::string_view) { ++sample_received; });
    }
    Clients publisher = make_clients(loop, common.endpoint, "pub", 1);
    connect_all(loop, publisher, kSetupTimeout);
    long sample_sent = 0;
    for (long i = 0; i < options.connections; i += step, ++sample_sent) {
        publisher[0]->link().queue_frame("PUBLISH " + bench_name(topic_prefix, i) + " ~0:0:0");
    }
    publisher[0]->link().flush();
    loop.run_until([&] { return sample_received == sample_sent; }, 10s);
    loop.run_until([] { return false; }, 1s);  // settle
    const long after = resident_bytes(pid);
    const double per_connection =
        static_cast<double>(after - before) / static_cast<double>(options.connections);
    add(result, "connections", static_cast<double>(options.connections),
        with_thousands(options.connections));
    add(result, "rss_before_bytes", static_cast<double>(before), kib_text(before));
    add(result, "rss_after_bytes", static_cast<double>(after), kib_text(after));
    add(result, "bytes_per_connection", per_connection, fixed(per_connection, 0) + " B");
    add(result, "sample_delivered", static_cast<double>(sample_received),
        std::to_string(sample_received) + " of " + std::to_string(sample_sent));
    if (sample_received != sample_sent) {
        fail(result, "not every sampled connection received its message");
    }
    return result;
}

// The lost client has a secret: a CONNECT without one is restored on the broker that lost it,
// but a cluster hands a client over to another node only for its secret.
Result run_drain(const Common& common, const DrainOptions& options) {
    Result result;
    result.scenario =
        "lost client: " + with_thousands(options.messages) + " queued msgs drained on reconnect";
    Endpoint restore_endpoint = common.endpoint;
    if (options.restore_port != 0) {
        restore_endpoint.port = options.restore_port;
        result.scenario += " to port " + std::to_string(options.restore_port);
    }
    Loop loop;
    const long run = next_run();
    const std::string topic = bench_name("drain-topic", run);
    const std::string name = bench_name("drain", run);
    const std::string secret = bench_name("drain-secret", run);
    Clients publisher = make_clients(loop, common.endpoint, "pub", 1);
    Clients subscriber;
    subscriber.push_back(std::make_unique<BenchClient>(loop, common.endpoint, name, secret));
    std::vector<std::vector<bool>> seen(1, std::vector<bool>(1));
    subscriber[0]->link().queue_frame("SUBSCRIBE " + topic);
    subscriber[0]->on_message([&](std::string_view, std::string_view) { seen[0][0] = true; });
    if (!connect_all(loop, publisher, kSetupTimeout) ||
        !connect_all(loop, subscriber, kSetupTimeout) ||
        !wait_until_subscribed(loop, publisher, subscriber, topic, seen)) {
        fail(result, setup_problem(broker_error({&publisher, &subscriber})));
        return result;
    }
    subscriber[0]->link().reset();
    subscriber.clear();
    loop.run_until([] { return false; }, 200ms);  // the broker notices the reset
    std::string frame;
    for (long i = 0; i < options.messages; ++i) {
        frame.assign("PUBLISH " + topic + " ");
        append_payload(frame, 0, i, 0, options.size);
        publisher[0]->link().queue_frame(frame);
    }
    publisher[0]->link().flush();
    if (!barrier(loop, *publisher[0])) {
        fail(result, "the publisher's barrier did not come back");
        return result;
    }
    std::vector<OrderCheck> checks(1, OrderCheck{1});
    const auto started = BenchClock::now();
    Clients again;
    again.push_back(std::make_unique<BenchClient>(loop, restore_endpoint, name, secret));
    again[0]->on_message([&](std::string_view, std::string_view data) {
        const Payload payload = parse_payload(data);
        if (!payload.probe) {
            checks[0].accept(payload);
        }
    });
    again[0]->link().flush();
    // Any answer but RESTORED, or a closed connection, ends the wait: nothing queued will come.
    loop.run_until(
        [&] {
            BenchClient& client = *again[0];
            return checks[0].delivered() >= options.messages ||
                   (client.answered() && !client.restored()) || client.link().closed();
        },
        common.timeout);
    const double seconds = std::chrono::duration<double>(BenchClock::now() - started).count();
    if (!again[0]->answered()) {
        fail(result, "the reconnect got no answer");
    } else if (!again[0]->restored()) {
        fail(result, "the reconnect was answered with '" + again[0]->reply() + "', not RESTORED");
    }
    add(result, "drain_ms", seconds * 1e3, fixed(seconds * 1e3, 2) + " ms");
    add(result, "drained_per_s", checks[0].delivered() / seconds,
        rate_text(checks[0].delivered() / seconds));
    add_checks(result, options.messages, checks);
    return result;
}

namespace {

// A topic that `filter` matches: every `+` or `#` level becomes "x".
std::string topic_matching(std::string_view filter) {
    std::string topic;
    std::size_t start = 0;
    for (;;) {
        const std::size_t slash = filter.find('/', start);
        const std::string_view level = filter.substr(start, slash - start);
        topic.append(level == "+" || level == "#" ? std::string_view{"x"} : level);
        if (slash == std::string_view::npos) {
            return topic;
        }
        topic.push_back('/');
        start = slash + 1;
    }
}

}  // namespace

Result run_filters(const Common& common, const FiltersOptions& options) {
    Result result;
    result.scenario = "memory per wildcard filter (" + with_thousands(options.filters) +
                      " filters " + options.pattern + " on " + with_thousands(options.connections) +
                      " connection" + (options.connections > 1 ? "s)" : ")");
    const pid_t pid = broker_process(common);
    if (pid == 0) {
        fail(result, "cannot find the broker process (give --pid)");
        return result;
    }
    Loop loop;
    Clients owners = make_clients(loop, common.endpoint, "filters", options.connections);
    if (!connect_all(loop, owners, kSetupTimeout)) {
        fail(result, "the connections were not accepted");
        return result;
    }
    // Measured from here, so that the connections' own memory is not counted.
    const long before = resident_bytes(pid);
    const auto started = BenchClock::now();
    const auto owner_of = [&](long filter) {
        return static_cast<std::size_t>(filter % options.connections);
    };
    for (long i = 0; i < options.filters; ++i) {
        owners[owner_of(i)]->link().queue_frame("SUBSCRIBE " + expand(options.pattern, i, false));
    }
    for (auto& owner : owners) {
        owner->link().flush();
    }
    for (auto& owner : owners) {
        if (!barrier(loop, *owner)) {
            fail(result, setup_problem(broker_error({&owners})));
            return result;
        }
    }
    const double seconds = std::chrono::duration<double>(BenchClock::now() - started).count();
    const long after = resident_bytes(pid);

    // Every filter sampled delivers a message to its owner, once, and to nobody else.
    std::vector<long> received(static_cast<std::size_t>(options.filters), 0);
    long stray = 0;
    for (std::size_t o = 0; o < owners.size(); ++o) {
        owners[o]->on_message([&, o, barrier = barrier_topic(*owners[o])](std::string_view topic,
                                                                          std::string_view data) {
            if (topic == barrier) {
                return;  // probes of the barrier may still be on their way
            }
            const Payload payload = parse_payload(data);
            if (payload.publisher != 0 || payload.sequence < 0 ||
                payload.sequence >= options.filters || owner_of(payload.sequence) != o) {
                ++stray;
                return;
            }
            ++received[static_cast<std::size_t>(payload.sequence)];
        });
    }
    Clients publisher = make_clients(loop, common.endpoint, "pub", 1);
    connect_all(loop, publisher, kSetupTimeout);
    const long step = std::max(1L, options.filters / 100);
    long sample_sent = 0;
    std::string frame;
    for (long i = 0; i < options.filters; i += step, ++sample_sent) {
        frame.assign("PUBLISH " + topic_matching(expand(options.pattern, i, false)) + " ");
        append_payload(frame, 0, i, 0, 16);
        publisher[0]->link().queue_frame(frame);
    }
    publisher[0]->link().flush();
    const auto sample_received = [&] {
        long once = 0;
        for (long i = 0; i < options.filters; i += step) {
            once += received[static_cast<std::size_t>(i)] == 1 ? 1 : 0;
        }
        return once;
    };
    loop.run_until([&] { return sample_received() == sample_sent; }, 10s);
    loop.run_until([] { return false; }, 100ms);  // a duplicate would arrive meanwhile
    long duplicates = 0;
    for (const long count : received) {
        duplicates += std::max(0L, count - 1);
    }

    const double per_filter =
        static_cast<double>(after - before) / static_cast<double>(options.filters);
    add(result, "filters", static_cast<double>(options.filters), with_thousands(options.filters));
    add(result, "subscribe_s", seconds, fixed(seconds, 3) + " s");
    add(result, "rss_before_bytes", static_cast<double>(before), kib_text(before));
    add(result, "rss_after_bytes", static_cast<double>(after), kib_text(after));
    add(result, "bytes_per_filter", per_filter, fixed(per_filter, 0) + " B");
    add(result, "sample_delivered", static_cast<double>(sample_received()),
        std::to_string(sample_received()) + " of " + std::to_string(sample_sent));
    add(result, "stray_or_duplicate", static_cast<double>(stray + duplicates),
        with_thousands(stray + duplicates));
    if (const std::string error = broker_error({&owners, &publisher}); !error.empty()) {
        fail(result, "the broker refused: " + error);
    }
    if (sample_received() != sample_sent || stray + duplicates != 0) {
        fail(result, "not every sampled filter delivered its message once to its owner alone");
    }
    return result;
}

}  // namespace pubsubx::bench
