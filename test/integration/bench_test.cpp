// pubsubx-bench end to end against the real server: each scenario completes with every
// delivery checked, and a broker that loses messages is reported as incomplete.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "support.hpp"

using namespace pubsubx::testing;

namespace {

std::string bench_path() {
    return binary_path("PUBSUBX_BENCH");
}

// Runs pubsubx-bench against `server` and returns its exit code; `output` gets what it printed.
int run_bench(ServerProcess& server, std::vector<std::string> args, std::string& output) {
    args.insert(args.begin(), {"-p", std::to_string(server.port())});
    ChildProcess bench{bench_path(), args};
    const auto code = bench.wait_exit(60'000ms);
    output = bench.output();
    return code.value_or(-1);
}

bool contains(const std::string& text, const std::string& needle) {
    return text.find(needle) != std::string::npos;
}

}  // namespace

TEST_CASE("throughput with several publishers and subscribers checks every delivery") {
    ServerProcess server{{"--quiet"}};
    std::string output;
    CHECK(run_bench(server, {"throughput", "-P", "2", "-S", "3", "-n", "20000", "-s", "64"},
                    output) == 0);
    CAPTURE(output);
    CHECK(contains(output, "throughput 2->3, 64 B\n"));
    CHECK(contains(output, "delivered              60,000\n"));
    CHECK(contains(output, "lost                   0\n"));
    CHECK(contains(output, "out_of_order           0\n"));
}

TEST_CASE("latency, drain and conns complete; --json prints one line per scenario") {
    ServerProcess server{{"--quiet"}};
    std::string output;
    CHECK(run_bench(server, {"--json", "latency", "-r", "5000", "-n", "500"}, output) == 0);
    CHECK(contains(output, "{\"scenario\":\"latency at 5,000 msgs/s, 16 B\",\"complete\":true,"));
    CHECK(contains(output, "\"p99_us\":"));
    CHECK(contains(output, "\"delivered\":500,\"lost\":0"));
    CHECK(run_bench(server, {"--json", "drain", "-n", "500"}, output) == 0);
    CHECK(contains(output, "\"complete\":true"));
    CHECK(contains(output, "\"delivered\":500,\"lost\":0"));
    CHECK(run_bench(server, {"conns", "-c", "50", "--pid", std::to_string(server.pid())}, output) ==
          0);
    CAPTURE(output);
    CHECK(contains(output, "bytes_per_connection"));
    CHECK(contains(output, "sample_delivered       50 of 50"));
}

TEST_CASE("a broker that drops messages makes the run incomplete, exit code 1") {
    // A window far larger than the subscriber's queue, and a queue that drops the oldest.
    ServerProcess server{{"--quiet", "--max-queue", "2000", "--slow-consumer-grace", "0"}};
    std::string output;
    CHECK(run_bench(server, {"throughput", "-n", "200000", "-w", "200000"}, output) == 1);
    CAPTURE(output);
    CHECK(contains(output, "** INCOMPLETE: "));
}

TEST_CASE("an unreachable broker is an error, exit code 2") {
    std::uint16_t closed_port = 0;
    {
        ServerProcess gone;
        closed_port = gone.port();
    }
    ChildProcess bench{bench_path(), {"-p", std::to_string(closed_port), "drain"}};
    CHECK(bench.wait_exit() == 2);
    CHECK(contains(bench.output(), "ERROR: cannot connect to 127.0.0.1:"));
}
