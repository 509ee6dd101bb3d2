#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace pubsubx {

// The encoded frames waiting to be written to one client, in one contiguous buffer so that a
// small message costs a copy, not an allocation, and a whole backlog goes out in one write.
// Bounded in bytes: making room drops the oldest whole frames. Frame boundaries are not stored:
// a frame never contains the delimiter, so the buffer can be re-split when dropping.
class OutboundQueue {
  public:
    explicit OutboundQueue(std::size_t max_bytes) : max_bytes_(max_bytes) {}

    // Appends one encoded frame (delimiter included). Returns how many frames were dropped to
    // make room; a frame larger than the whole bound is itself dropped and counted.
    std::size_t push(std::string_view encoded_frame) {
        return push_within(encoded_frame, max_bytes_);
    }
    // The same with a tighter bound for this push (the broker's global cap leaves less room).
    std::size_t push_within(std::string_view encoded_frame, std::size_t bound);
    // Puts control frames before everything queued, whatever the bound (the RESTORED reply).
    void push_front_unbounded(std::string_view encoded_frames);

    std::size_t max_bytes() const { return max_bytes_; }
    bool empty() const { return bytes_.size() == head_; }
    std::size_t size() const { return bytes_.size() - head_; }
    // Number of whole frames queued (counts delimiters; not for hot paths).
    std::size_t frame_count() const;

    // Moves everything queued into `out` (cleared first). Buffers are swapped, not copied,
    // so both sides keep their capacity for the next round.
    void take_all(std::string& out);
    void clear();
    // Gives the buffer's memory back when it is empty and larger than an idle client needs.
    void release_memory_if_empty();
    // Gives the buffer's memory back when it is empty, whatever its size (the client is idle).
    void release_all_memory_if_empty();

  private:
    void drop_oldest_frame();

    std::string bytes_;
    std::size_t head_ = 0;  // bytes before head_ were dropped but not yet compacted away
    std::size_t max_bytes_;
};

}  // namespace pubsubx
