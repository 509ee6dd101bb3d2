// pubsubx-bench: the project's own benchmark client. Drives a running broker over TCP with the
// scenarios in scenarios.hpp, checks every delivery, and prints a table (or JSON lines).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "lost_clients.hpp"
#include "pubsubx/version.hpp"
#include "scenarios.hpp"
#include "wildcard_goals.hpp"

namespace {

using namespace pubsubx::bench;

// Exit codes: 0 complete (and every goal met), 1 a run was incomplete (losses, errors, a
// timeout), 2 a usage error or an unreachable broker, 3 complete but a goal missed.
constexpr int kGoalMissed = 3;

void print_goals(const std::vector<Goal>& goals, int runs, bool json) {
    if (!json) {
        std::printf("goals (issue 10), medians of %d round%s:\n", runs, runs > 1 ? "s" : "");
    }
    for (const Goal& goal : goals) {
        if (json) {
            char numbers[96];
            std::snprintf(numbers, sizeof numbers, ",\"value\":%.6g,\"target\":%.6g,\"met\":%s",
                          goal.value, goal.target, goal.met() ? "true" : "false");
            std::printf("{\"goal\":%s,\"measured\":%s%s,\"figures\":%s}\n",
                        json_string(goal.name).c_str(), goal.measured ? "true" : "false", numbers,
                        json_string(goal.figures).c_str());
        } else if (goal.target > 0) {
            std::printf("  %-5s %s: %.2fx (goal >= %.2fx): %s\n", goal.met() ? "PASS" : "MISS",
                        goal.name.c_str(), goal.value, goal.target, goal.figures.c_str());
        } else {
            std::printf("  %-5s %s: %s\n", goal.measured ? "info" : "MISS", goal.name.c_str(),
                        goal.figures.c_str());
        }
    }
}

struct Settings {
    Common common;
    bool json = false;
    int timeout_seconds = 60;
    ThroughputOptions throughput;
    LatencyOptions latency;
    ConnsOptions conns;
    DrainOptions drain;
    FiltersOptions filters;
    WildcardGoalsOptions wildcards;
    LostFloodOptions lost_flood;
    ChurnOptions churn;
};

// Topics, filters and patterns go into frames as one field: no spaces.
CLI::Validator no_spaces() {
    return CLI::Validator(
        [](const std::string& text) {
            return text.find(' ') == std::string::npos ? std::string{} : "must not contain spaces";
        },
        "TEXT", "no spaces");
}

void add_throughput_options(CLI::App& command, ThroughputOptions& options) {
    command.add_option("-P,--pubs", options.publishers, "Publishers")
        ->check(CLI::Range(1, 1000))
        ->capture_default_str();
    command.add_option("-S,--subs", options.subscribers, "Subscribers")
        ->check(CLI::Range(1, 1000))
        ->capture_default_str();
    command.add_option("-n,--msgs", options.messages, "Messages in all (split over publishers)")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    command.add_option("-s,--size", options.size, "Payload bytes")->capture_default_str();
    command
        .add_option("--sub-port", options.sub_port,
                    "Subscribers connect to this port (same host), publishers to -p: across two "
                    "nodes of a cluster (0: -p for both)")
        ->capture_default_str();
    command
        .add_option("--settle-ms", options.settle_ms,
                    "Milliseconds to wait once subscribed (every subscriber saw a probe) before "
                    "publishing, e.g. for a cluster to settle")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    command
        .add_option("-w,--window", options.window,
                    "Messages published but not yet received by the slowest subscriber")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    TopicOptions& topics = options.topics;
    command
        .add_option("-t,--topic", topics.pattern,
                    "Topic pattern: {i} becomes the topic number (default: a topic of the run's "
                    "own)")
        ->check(no_spaces());
    command
        .add_option("--pub-topics", topics.topics,
                    "Topics from --topic; each publisher sends message k to topic k mod N")
        ->check(CLI::Range(1L, 1'000'000L))
        ->capture_default_str();
    command
        .add_option("--sub-topic", topics.filter,
                    "Subscribers subscribe to this filter instead of every topic (it must "
                    "match them all)")
        ->check(no_spaces());
    command
        .add_option("--noise-filters", topics.noise_filters,
                    "One more connection subscribes to this many filters that match no topic "
                    "(the broker needs --max-topics 0 or above it)")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    command.add_option("--noise-pattern", topics.noise_pattern, "Noise filter i: {i} becomes i")
        ->check(no_spaces())
        ->capture_default_str();
}

void add_latency_options(CLI::App& command, LatencyOptions& options) {
    command.add_option("-r,--rate", options.rate, "Messages per second")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    command.add_option("-n,--msgs", options.messages, "Messages")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    command.add_option("-s,--size", options.size, "Payload bytes")->capture_default_str();
    command.add_option("-S,--subs", options.subscribers, "Subscribers")
        ->check(CLI::Range(1, 1000))
        ->capture_default_str();
}

void add_lost_flood_options(CLI::App& command, LostFloodOptions& options) {
    command.add_option("-S,--subs", options.subscribers, "Subscribers, lost before the flood")
        ->check(CLI::Range(1, 1000))
        ->capture_default_str();
    command.add_option("-n,--msgs", options.messages, "Messages published")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    command.add_option("-s,--size", options.size, "Payload bytes")->capture_default_str();
    command.add_option("-t,--topic", options.topic, "Topic (default: one of the run's own)")
        ->check(no_spaces());
    command.add_option("-r,--rate", options.rate, "Messages a second (0: as fast as it goes)")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
}

void add_churn_options(CLI::App& command, ChurnOptions& options) {
    command.add_option("--keepers", options.keepers, "Clients restored every round")
        ->check(CLI::Range(0, 1000))
        ->capture_default_str();
    command.add_option("--leavers", options.leavers, "New clients a round that expire")
        ->check(CLI::Range(0, 1000))
        ->capture_default_str();
    command.add_option("-n,--msgs", options.messages, "Messages published a round")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    command.add_option("-s,--size", options.size, "Payload bytes")->capture_default_str();
    command.add_option("--seconds", options.seconds, "Rounds start until this many seconds")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
}

// The standard set: the cases of docs/performance.md.
std::vector<std::function<Result()>> standard_set(const Settings& settings) {
    const Common& common = settings.common;
    return {
        [&] {
            return run_throughput(common, {1, 1, 1'000'000, 16, 10'000});
        },
        [&] {
            return run_throughput(common, {1, 10, 1'000'000, 16, 10'000});
        },
        [&] {
            return run_throughput(common, {1, 1, 1'000'000, 128, 10'000});
        },
        [&] {
            return run_latency(common, {1, 10'000, 50'000, 16});
        },
        [&] {
            return run_drain(common, {10'000, 16});
        },
        [&] { return run_conns(common, {10'000}); },
    };
}

// Several topics or filters from one pattern must differ: the pattern needs {i}.
std::string check_patterns(const Settings& settings) {
    const auto numbered = [](const std::string& pattern) {
        return pattern.find("{i}") != std::string::npos;
    };
    const TopicOptions& topics = settings.throughput.topics;
    if (topics.noise_filters > 1 && !numbered(topics.noise_pattern)) {
        return "--noise-pattern needs {i} to make distinct filters";
    }
    if (settings.filters.filters > 1 && !numbered(settings.filters.pattern)) {
        return "--pattern needs {i} to make distinct filters";
    }
    return {};
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{
        "pubsubx-bench: drives a running pubsubx-server and checks every delivery. Start the "
        "broker first (pubsubx-server PORT --quiet)."};
    app.set_version_flag("--version", std::string{"pubsubx-bench "} + pubsubx::kVersion);
    app.require_subcommand(1);
    app.fallthrough();  // the common options may come after the scenario too (set before them)
    Settings settings;
    app.add_option("-H,--host", settings.common.endpoint.host, "Broker host")
        ->capture_default_str();
    app.add_option("-p,--port", settings.common.endpoint.port, "Broker port")
        ->capture_default_str();
    app.add_option("--pid", settings.common.broker_pid,
                   "Broker process, for its memory (default: found from the port)");
    app.add_option("--timeout", settings.timeout_seconds, "Seconds a scenario may take")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    app.add_flag("--json", settings.json, "One JSON line per scenario instead of a table");
    bool tls = false;
    std::string ca_file;
    app.add_flag("--tls", tls,
                 "Connect to the broker's TLS port (checking its certificate and host name)");
    app.add_option("--cafile", ca_file, "With --tls: CA certificates (PEM) to trust")
        ->check(CLI::ExistingFile);
    app.add_flag("--insecure", settings.common.endpoint.tls_insecure,
                 "With --tls: do not check the broker's certificate");

    auto* throughput = app.add_subcommand("throughput", "Messages per second, pipelined");
    add_throughput_options(*throughput, settings.throughput);
    auto* latency = app.add_subcommand("latency", "One-way latency at a fixed rate");
    add_latency_options(*latency, settings.latency);
    auto* conns = app.add_subcommand("conns", "Broker memory per idle subscribed connection");
    conns->add_option("-c,--conns", settings.conns.connections, "Connections")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    auto* drain = app.add_subcommand("drain", "A lost client's queue drained on reconnect");
    drain->add_option("-n,--msgs", settings.drain.messages, "Messages queued while lost")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    drain->add_option("-s,--size", settings.drain.size, "Payload bytes")->capture_default_str();
    drain
        ->add_option("--restore-port", settings.drain.restore_port,
                     "The lost client reconnects to this port (same host), e.g. another node of "
                     "a cluster that must have it handed over (0: -p)")
        ->capture_default_str();
    auto* filters = app.add_subcommand(
        "filters", "Broker memory per wildcard filter (the broker needs --max-topics 0)");
    filters->add_option("-f,--filters", settings.filters.filters, "Filters")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    filters->add_option("-c,--conns", settings.filters.connections, "Connections holding them")
        ->check(CLI::Range(1, 10'000))
        ->capture_default_str();
    filters->add_option("--pattern", settings.filters.pattern, "Filter i: {i} becomes i")
        ->check(no_spaces())
        ->capture_default_str();
    auto* wildcards = app.add_subcommand(
        "wildcards",
        "The routing goals of issue 10 in one run, each ratio next to its goal (the broker needs "
        "--max-topics 0); exit code 3 when a goal is missed");
    WildcardGoalsOptions& goals = settings.wildcards;
    wildcards->add_option("-n,--msgs", goals.messages, "Messages per throughput run")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    wildcards->add_option("--runs", goals.runs, "Rounds of the throughput runs (medians)")
        ->check(CLI::Range(1, 100))
        ->capture_default_str();
    wildcards->add_option("--noise-filters", goals.noise_filters, "Non-matching filters")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    wildcards->add_option("--pub-topics", goals.topics, "Topics s/<i>/temp of the fan-out")
        ->check(CLI::Range(1L, 1'000'000L))
        ->capture_default_str();
    wildcards->add_option("-S,--subs", goals.subscribers, "Subscribers of the fan-out cases")
        ->check(CLI::Range(1, 1000))
        ->capture_default_str();
    wildcards->add_option("-f,--filters", goals.filters, "Filters for the memory figure (0: skip)")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    auto* lost_flood = app.add_subcommand(
        "lost-flood",
        "Subscribers on one topic are lost, then one publisher floods the topic: the broker "
        "queues every message for each of them (bench/durability reads its store meanwhile)");
    add_lost_flood_options(*lost_flood, settings.lost_flood);
    auto* churn = app.add_subcommand(
        "churn",
        "Rounds of clients lost, restored or left to expire while messages are queued for "
        "them (the broker needs a --lost-timeout longer than a round)");
    add_churn_options(*churn, settings.churn);
    auto* all = app.add_subcommand("all", "The standard set (docs/performance.md)");
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& error) {
        return app.exit(error) == 0 ? 0 : 2;  // 2: a usage error, as for the other tools
    }
    settings.common.timeout = std::chrono::seconds{settings.timeout_seconds};
    if (!tls && (!ca_file.empty() || settings.common.endpoint.tls_insecure)) {
        std::fprintf(stderr, "--cafile and --insecure need --tls\n");
        return 2;
    }
    if (tls) {
        try {
            settings.common.endpoint.tls =
                make_tls_context(ca_file, settings.common.endpoint.tls_insecure);
        } catch (const std::exception& error) {
            std::fprintf(stderr, "ERROR: %s\n", error.what());
            return 2;
        }
    }
    if (const std::string problem = check_patterns(settings); !problem.empty()) {
        std::fprintf(stderr, "%s\nRun with --help for more information.\n", problem.c_str());
        return 2;
    }

    std::vector<std::function<Result()>> runs;
    if (throughput->parsed()) {
        runs.push_back([&] { return run_throughput(settings.common, settings.throughput); });
    } else if (latency->parsed()) {
        runs.push_back([&] { return run_latency(settings.common, settings.latency); });
    } else if (conns->parsed()) {
        runs.push_back([&] { return run_conns(settings.common, settings.conns); });
    } else if (drain->parsed()) {
        runs.push_back([&] { return run_drain(settings.common, settings.drain); });
    } else if (filters->parsed()) {
        runs.push_back([&] { return run_filters(settings.common, settings.filters); });
    } else if (lost_flood->parsed()) {
        runs.push_back([&] { return run_lost_flood(settings.common, settings.lost_flood); });
    } else if (churn->parsed()) {
        runs.push_back([&] { return run_churn(settings.common, settings.churn); });
    } else if (all->parsed()) {
        runs = standard_set(settings);
    }
    bool complete = true;
    const auto report = [&](const Result& result) {
        settings.json ? print_json(result) : print_table(result);
        std::fflush(stdout);
        complete = complete && result.complete;
    };
    try {
        if (wildcards->parsed()) {
            const std::vector<Goal> goals =
                run_wildcard_goals(settings.common, settings.wildcards, report);
            print_goals(goals, settings.wildcards.runs, settings.json);
            const bool met = std::all_of(goals.begin(), goals.end(),
                                         [](const Goal& goal) { return goal.met(); });
            return !complete ? 1 : met ? 0 : kGoalMissed;
        }
        for (const auto& run : runs) {
            report(run());
        }
    } catch (const std::exception& error) {
        std::fprintf(stderr, "ERROR: %s\n", error.what());
        return 2;
    }
    return complete ? 0 : 1;
}
