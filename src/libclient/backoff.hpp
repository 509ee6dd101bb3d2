// The wait before a reconnection attempt: exponential, capped, with jitter. Pure.
#pragma once

#include <chrono>
#include <cstdint>

#include "pubsubx/client.hpp"

namespace pubsubx::client {

// The wait before attempt `attempt` (1, 2, ...): initial_delay * multiplier^(attempt-1), at
// most max_delay, less `random` (0..1) times `jitter` of it.
std::chrono::milliseconds reconnect_delay(const ReconnectOptions& options, std::uint32_t attempt,
                                          double random);

}  // namespace pubsubx::client
