// The routing goals of issue 10 measured in one run: wildcard filters that match nothing must
// not slow publishing down, fan-out through a wildcard must keep up with exact topics, and the
// memory per filter is reported. Each goal is a ratio of two runs against the same broker.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "scenarios.hpp"

namespace pubsubx::bench {

struct WildcardGoalsOptions {
    long messages = 1'000'000;  // per throughput run
    int runs = 1;               // rounds of the four throughput runs; goals use the medians
    long noise_filters = 10'000;
    long topics = 1'000;  // the fan-out publishes over s/<i>/temp, i < topics
    int subscribers = 10;
    long filters = 100'000;  // for the memory per filter; 0: not measured
};

// One goal as measured. A goal with a target is a ratio that must reach it; one without is a
// figure that is only reported.
struct Goal {
    std::string name;
    std::string figures;  // what the ratio was made of
    double value = 0;
    double target = 0;      // 0: reported only
    bool measured = false;  // false: a run it needs was incomplete
    bool met() const { return measured && value >= target; }
};

// Runs the memory scenario first (on a fresh broker it is not flattered by memory an earlier
// run freed), then `runs` rounds of: 1 -> 1 plain, 1 -> 1 with the noise filters, 1 -> N on one
// exact topic, 1 -> N through s/+/temp. Every result goes to `on_result` as it is made.
std::vector<Goal> run_wildcard_goals(const Common& common, const WildcardGoalsOptions& options,
                                     const std::function<void(const Result&)>& on_result);

}  // namespace pubsubx::bench
