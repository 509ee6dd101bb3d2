#include "pubsubx/outbound_queue.hpp"

#include "pubsubx/protocol.hpp"

namespace pubsubx {

namespace {
// Dropped bytes at the front are compacted away once they are this large and at least half of
// the buffer, so that dropping stays O(1) amortised.
constexpr std::size_t kCompactThreshold = 64 * 1024;
// An empty queue keeps at most this much capacity; more is returned to the allocator so that
// an idle client costs little memory after a burst.
constexpr std::size_t kIdleCapacity = 16 * 1024;
}  // namespace

std::size_t OutboundQueue::push(std::string_view encoded_frame, std::size_t max_bytes) {
    if (encoded_frame.size() > max_bytes) {
        return 1;
    }
    std::size_t dropped = 0;
    while (size() + encoded_frame.size() > max_bytes) {
        drop_oldest_frame();
        ++dropped;
    }
    if (head_ >= kCompactThreshold && head_ * 2 >= bytes_.size()) {
        bytes_.erase(0, head_);
        head_ = 0;
    }
    bytes_.append(encoded_frame);
    return dropped;
}

void OutboundQueue::push_front_unbounded(std::string_view encoded_frames) {
    bytes_.erase(0, head_);
    head_ = 0;
    bytes_.insert(0, encoded_frames);
}

std::size_t OutboundQueue::frame_count() const {
    std::size_t count = 0;
    const std::string_view queued = std::string_view{bytes_}.substr(head_);
    for (std::size_t at = find_delimiter(queued); at != std::string_view::npos;
         at = find_delimiter(queued, at + kDelimiter.size())) {
        ++count;
    }
    return count;
}

void OutboundQueue::take_all(std::string& out) {
    out.clear();
    if (head_ == 0) {
        out.swap(bytes_);
    } else {
        out.append(bytes_, head_);
        bytes_.clear();
        head_ = 0;
    }
}

void OutboundQueue::clear() {
    bytes_.clear();
    head_ = 0;
}

void OutboundQueue::release_memory_if_empty() {
    if (empty() && bytes_.capacity() > kIdleCapacity) {
        std::string{}.swap(bytes_);
        head_ = 0;
    }
}

void OutboundQueue::release_all_memory_if_empty() {
    if (empty() && bytes_.capacity() > std::string{}.capacity()) {
        std::string{}.swap(bytes_);
        head_ = 0;
    }
}

void OutboundQueue::drop_oldest_frame() {
    const std::size_t end = find_delimiter(bytes_, head_);
    // Every queued frame ends with a delimiter, so one is always found while size() > 0.
    head_ = end == std::string::npos ? bytes_.size() : end + kDelimiter.size();
    if (head_ == bytes_.size()) {
        clear();
    }
}

}  // namespace pubsubx
