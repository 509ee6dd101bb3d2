#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace pubsubx {

// The encoded frames waiting to be written to one client, in one contiguous buffer so that a
// small message costs a copy, not an allocation, and a whole backlog goes out in one write.
//
// Two kinds of frames: messages, bounded in bytes (making room drops the oldest whole
// messages), and control frames (accept, RESTORED, error frames), which are never dropped and
// go out before the queued messages. Message boundaries are not stored: a frame never
// contains the delimiter, so the buffer can be re-split when dropping.
//
// Memory: dropped bytes at the front are compacted away once they are as many as the live
// ones (so the buffer spans at most 2 x the queued bytes + one frame), and spare capacity
// beyond twice the live bytes is given back then; with the string's doubling growth the heap
// held is at most 4 x the queued bytes + 2 frames + kSpareCapacity.
class OutboundQueue {
  public:
    static constexpr std::size_t kSpareCapacity = 256;

    // Appends one encoded message (delimiter included), first dropping the oldest messages
    // until at most `max_bytes` of messages are queued with it (control frames do not count).
    // Returns how many messages were dropped; a message that cannot fit even in an emptied
    // queue is itself dropped and counted. The bound is the caller's (not stored here: one
    // queue per client, and every byte per idle client counts).
    std::size_t push(std::string_view encoded_frame, std::size_t max_bytes);
    // Drops the oldest messages until at least `bytes` were freed or none are left; returns
    // {messages, bytes} dropped.
    struct Dropped {
        std::size_t messages = 0;
        std::size_t bytes = 0;
    };
    Dropped drop_oldest(std::size_t bytes);

    // Control frames (delimiters included), never dropped, written before the messages.
    void push_control(std::string_view encoded_frames);
    // Forgets unsent control frames (they answered a connection that is gone).
    void discard_control();
    // Moves the unsent control frames out, leaving the messages queued.
    std::string take_control();

    bool empty() const { return size() == 0; }
    std::size_t size() const { return message_bytes() + control_bytes(); }
    std::size_t message_bytes() const { return bytes_.size() - head_; }
    // The queued messages, oldest first, delimiters included.
    std::string_view messages() const { return std::string_view{bytes_}.substr(head_); }
    std::size_t control_bytes() const { return control_ == nullptr ? 0 : control_->size(); }
    // Number of queued messages (counts delimiters; not for hot paths).
    std::size_t message_count() const;
    // Heap bytes the queue holds (its buffers' capacities), for the memory bound's tests.
    std::size_t memory_held() const;

    // Moves everything queued into `out` (cleared first): control frames, then messages.
    // Returns how many of the bytes are control frames. Buffers are swapped where possible, so
    // both sides keep their capacity for the next round.
    std::size_t take_all(std::string& out);
    // The same for at most `max_bytes` of messages (whole ones, at least one): the rest stays
    // queued.
    std::size_t take_up_to(std::string& out, std::size_t max_bytes);
    // Puts messages a write could not send back in front of the queued ones (at a stop).
    void return_unsent(std::string_view encoded_frames);
    void clear();
    // Gives the buffer's memory back when it is empty and larger than an idle client needs.
    void release_memory_if_empty();
    // Gives the buffer's memory back when it is empty, whatever its size (the client is idle).
    void release_all_memory_if_empty();

  private:
    std::size_t drop_oldest_message();
    void compact_if_worthwhile();

    std::string bytes_;
    std::size_t head_ = 0;  // bytes before head_ were dropped but not yet compacted away
    std::unique_ptr<std::string> control_;  // rare: allocated only while control frames wait
};

}  // namespace pubsubx
