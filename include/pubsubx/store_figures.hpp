// What the durable store (--data-dir, src/store/) reports of itself: for the $SYS topics,
// the counters line and the shutdown line.
#pragma once

#include <cstddef>
#include <cstdint>

namespace pubsubx {

struct StoreFigures {
    std::uint64_t messages_written = 0;      // reached the file
    std::uint64_t messages_stored = 0;       // in the file now, queued for lost clients
    std::uint64_t messages_not_durable = 0;  // kept in memory only (the writer was behind)
    std::uint64_t commits = 0;
    std::uint64_t failed_commits = 0;
    std::uint64_t rewrites = 0;     // the store written anew from memory
    std::size_t backlog_bytes = 0;  // changes not yet committed
};

}  // namespace pubsubx
