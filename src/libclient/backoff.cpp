#include "backoff.hpp"

#include <algorithm>
#include <cmath>

namespace pubsubx::client {

std::chrono::milliseconds reconnect_delay(const ReconnectOptions& options, std::uint32_t attempt,
                                          double random) {
    const double initial =
        static_cast<double>(std::max<std::int64_t>(0, options.initial_delay.count()));
    const double cap = static_cast<double>(std::max<std::int64_t>(0, options.max_delay.count()));
    const double multiplier = std::max(1.0, options.multiplier);
    const double exponent = static_cast<double>(std::max<std::uint32_t>(attempt, 1) - 1);
    // pow overflows to infinity for large attempts; min() then gives the cap.
    double delay = std::min(cap, initial * std::pow(multiplier, exponent));
    const double jitter = std::clamp(options.jitter, 0.0, 1.0);
    delay -= delay * jitter * std::clamp(random, 0.0, 1.0);
    return std::chrono::milliseconds{static_cast<std::int64_t>(std::llround(delay))};
}

}  // namespace pubsubx::client
