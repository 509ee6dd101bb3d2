#include "wildcard_goals.hpp"

#include <algorithm>
#include <cstdio>
#include <map>

#include "bench_client.hpp"

namespace pubsubx::bench {

namespace {

double figure(const Result& result, const std::string& key) {
    for (const Figure& figure : result.figures) {
        if (figure.key == key) {
            return figure.value;
        }
    }
    return 0;
}

// The median delivered msgs/s of a case's complete runs; 0 if any run was incomplete, as a
// ratio over a lossy run would mean nothing.
double median_rate(const std::vector<Result>& runs) {
    std::vector<double> rates;
    for (const Result& run : runs) {
        if (!run.complete) {
            return 0;
        }
        rates.push_back(figure(run, "delivered_per_s"));
    }
    if (rates.empty()) {
        return 0;
    }
    std::sort(rates.begin(), rates.end());
    const std::size_t middle = rates.size() / 2;
    return rates.size() % 2 == 1 ? rates[middle] : (rates[middle - 1] + rates[middle]) / 2;
}

std::string millions(double per_second) {
    char text[32];
    std::snprintf(text, sizeof text, "%.2f M", per_second / 1e6);
    return text;
}

Goal ratio_goal(std::string name, double measured, double baseline, const std::string& versus,
                double target) {
    Goal goal{std::move(name), {}, 0, target, measured > 0 && baseline > 0};
    goal.value = goal.measured ? measured / baseline : 0;
    goal.figures = goal.measured ? millions(measured) + " vs " + millions(baseline) +
                                       " delivered msgs/s " + versus
                                 : "not measured: a run was incomplete";
    return goal;
}

}  // namespace

std::vector<Goal> run_wildcard_goals(const Common& common, const WildcardGoalsOptions& options,
                                     const std::function<void(const Result&)>& on_result) {
    std::vector<Goal> goals;
    Goal memory{"memory per wildcard filter", "not measured", 0, 0, false};
    if (options.filters > 0) {
        const Result filters = run_filters(common, {options.filters, 1, "f/{i}/+"});
        on_result(filters);
        memory.measured = filters.complete;
        memory.value = figure(filters, "bytes_per_filter");
        if (filters.complete) {
            char text[96];
            std::snprintf(text, sizeof text, "%.0f B per filter (%s filters f/<i>/+)", memory.value,
                          with_thousands(options.filters).c_str());
            memory.figures = text;
        } else {
            memory.figures = "not measured: " + filters.problem;
        }
    }

    ThroughputOptions plain{1, 1, options.messages, 16, 10'000};
    ThroughputOptions noisy = plain;
    noisy.topics.noise_filters = options.noise_filters;
    ThroughputOptions exact{1, options.subscribers, options.messages, 16, 10'000};
    ThroughputOptions fan_out = exact;
    fan_out.topics.pattern = "s/{i}/temp";
    fan_out.topics.topics = options.topics;
    fan_out.topics.filter = "s/+/temp";
    // Alternating rounds, so that the two sides of each ratio see the same machine.
    std::map<std::string, std::vector<Result>> runs;
    for (int round = 0; round < options.runs; ++round) {
        for (const auto& [key, run] :
             {std::pair{"plain", &plain}, std::pair{"noisy", &noisy}, std::pair{"exact", &exact},
              std::pair{"fan-out", &fan_out}}) {
            runs[key].push_back(run_throughput(common, *run));
            on_result(runs[key].back());
        }
    }
    goals.push_back(ratio_goal(
        with_thousands(options.noise_filters) + " non-matching wildcard filters, 1 -> 1, 16 B",
        median_rate(runs["noisy"]), median_rate(runs["plain"]), "without them", 0.9));
    goals.push_back(
        ratio_goal("fan-out 1 -> " + std::to_string(options.subscribers) + " over " +
                       with_thousands(options.topics) + " topics s/<i>/temp via s/+/temp",
                   median_rate(runs["fan-out"]), median_rate(runs["exact"]),
                   "exact 1 -> " + std::to_string(options.subscribers) + " on one topic", 0.8));
    goals.push_back(memory);
    return goals;
}

}  // namespace pubsubx::bench
