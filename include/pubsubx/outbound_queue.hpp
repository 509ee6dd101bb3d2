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
    // Appends one encoded frame (delimiter included), first dropping the oldest frames until
    // at most `max_bytes` are queued with it. Returns how many frames were dropped; a frame
    // larger than `max_bytes` is itself dropped and counted. The bound is the caller's (not
    // stored here: one queue per client, and every byte per idle client counts).
    std::size_t push(std::string_view encoded_frame, std::size_t max_bytes);
    // Puts control frames before everything queued, whatever the bound (the RESTORED reply).
    void push_front_unbounded(std::string_view encoded_frames);

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
};

}  // namespace pubsubx
