// pubsubx-bench: the project's own benchmark client. Drives a running broker over TCP with the
// scenarios in scenarios.hpp, checks every delivery, and prints a table (or JSON lines).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "pubsubx/version.hpp"
#include "scenarios.hpp"

namespace {

using namespace pubsubx::bench;

// A JSON string: our keys and scenario names are plain ASCII, but quote them properly anyway.
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

struct Settings {
    Common common;
    bool json = false;
    int timeout_seconds = 60;
    ThroughputOptions throughput;
    LatencyOptions latency;
    ConnsOptions conns;
    DrainOptions drain;
};

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
        .add_option("-w,--window", options.window,
                    "Messages published but not yet received by the slowest subscriber")
        ->check(CLI::PositiveNumber)
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
    auto* all = app.add_subcommand("all", "The standard set (docs/performance.md)");
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& error) {
        return app.exit(error) == 0 ? 0 : 2;  // 2: a usage error, as for the other tools
    }
    settings.common.timeout = std::chrono::seconds{settings.timeout_seconds};

    std::vector<std::function<Result()>> runs;
    if (throughput->parsed()) {
        runs.push_back([&] { return run_throughput(settings.common, settings.throughput); });
    } else if (latency->parsed()) {
        runs.push_back([&] { return run_latency(settings.common, settings.latency); });
    } else if (conns->parsed()) {
        runs.push_back([&] { return run_conns(settings.common, settings.conns); });
    } else if (drain->parsed()) {
        runs.push_back([&] { return run_drain(settings.common, settings.drain); });
    } else if (all->parsed()) {
        runs = standard_set(settings);
    }
    bool complete = true;
    try {
        for (const auto& run : runs) {
            const Result result = run();
            settings.json ? print_json(result) : print_table(result);
            std::fflush(stdout);
            complete = complete && result.complete;
        }
    } catch (const std::exception& error) {
        std::fprintf(stderr, "ERROR: %s\n", error.what());
        return 2;
    }
    return complete ? 0 : 1;
}
