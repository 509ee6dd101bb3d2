#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace pubsubx {

// A large encoded frame (delimiter included), encoded once and shared, immutable, by every
// queue and write it is delivered to.
using SharedFrame = std::shared_ptr<const std::string>;

// Shared frames placed among contiguous ("inline") bytes: each goes out just before the inline
// byte at offset `at` (at the end when `at` is the inline bytes' size); several at one offset
// go in their order here. Offsets never decrease along the list.
struct SharedFrames {
    struct Placed {
        std::size_t at;
        SharedFrame frame;
    };
    std::vector<Placed> placed;
    std::size_t first = 0;  // entries before it were taken or dropped
    std::size_t bytes = 0;  // of the frames from `first` on

    bool empty() const { return first == placed.size(); }
    std::size_t count() const { return placed.size() - first; }
    void clear();
    // Erases the entries before `first` once they are many and at least half the list.
    void erase_spent();
    // Moves every offset by `delta` (the inline bytes before them changed by that much).
    void shift(std::ptrdiff_t delta);
    // Calls on_piece(std::string_view) for the inline bytes from `from` on and the frames
    // placed among them, in order, skipping empty stretches of inline bytes.
    template <typename OnPiece>
    void for_each_piece(std::string_view inline_bytes, std::size_t from, OnPiece&& on_piece) const;
    // Appends the inline bytes from `from` on with the frames placed among them, in order.
    void append_flattened(std::string& out, std::string_view inline_bytes,
                          std::size_t from = 0) const;
    // Replaces `inline_bytes` by its bytes from `from` on with the frames copied in, and
    // forgets the frames: where a rare path needs one contiguous buffer.
    void merge_into(std::string& inline_bytes, std::size_t from = 0);
};

template <typename OnPiece>
void SharedFrames::for_each_piece(std::string_view inline_bytes, std::size_t from,
                                  OnPiece&& on_piece) const {
    std::size_t at = from;
    for (std::size_t i = first; i < placed.size(); ++i) {
        if (placed[i].at > at) {
            on_piece(inline_bytes.substr(at, placed[i].at - at));
        }
        on_piece(std::string_view{*placed[i].frame});
        at = placed[i].at;
    }
    if (at < inline_bytes.size()) {
        on_piece(inline_bytes.substr(at));
    }
}

// The encoded frames waiting to be written to one client, in one contiguous buffer so that a
// small message costs a copy, not an allocation, and a whole backlog goes out in one write.
//
// Two kinds of frames: messages, bounded in bytes (making room drops the oldest whole
// messages), and control frames (accept, RESTORED, error frames), which are never dropped and
// go out before the queued messages. Message boundaries are not stored: a frame never
// contains the delimiter, so the buffer can be re-split when dropping.
//
// Large messages are not copied: a queue holds a reference to a SharedFrame, placed among
// the inline bytes, and a write gathers both (take_up_to with SharedFrames). Rare paths that
// need contiguous bytes (a lost client, the store, a handover, an interrupted write) flatten
// them into the buffer (a copy).
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
    // The same with a reference to a shared frame instead of a copy.
    std::size_t push_shared(const SharedFrame& frame, std::size_t max_bytes);
    // Appends a message the caller knows to fit every bound (the common case: no drop loop).
    void append(std::string_view encoded_frame) { bytes_.append(encoded_frame); }
    void append_shared(const SharedFrame& frame);
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
    std::size_t message_bytes() const {
        return bytes_.size() - head_ + (rare_ == nullptr ? 0 : rare_->shared.bytes);
    }
    // The queued messages, oldest first, delimiters included. Flattens shared frames into the
    // buffer first (a copy; the queue's contents stay the same, hence const): for rare paths.
    std::string_view messages() const;
    std::size_t control_bytes() const { return rare_ == nullptr ? 0 : rare_->control.size(); }
    // Number of shared frames queued (for tests).
    std::size_t shared_count() const { return rare_ == nullptr ? 0 : rare_->shared.count(); }
    // Copies the shared frames into the contiguous buffer (a client becomes lost).
    void flatten() const;
    // Number of queued messages (counts delimiters; not for hot paths).
    std::size_t message_count() const;
    // Heap bytes the queue holds (its buffers' capacities), for the memory bound's tests.
    std::size_t memory_held() const;

    // Moves everything queued into `out` (cleared first): control frames, then messages.
    // Returns how many of the bytes are control frames. Buffers are swapped where possible, so
    // both sides keep their capacity for the next round.
    std::size_t take_all(std::string& out);
    std::size_t take_all(std::string& out, SharedFrames& shared);
    // The same for at most `max_bytes` of messages (whole ones, at least one): the rest stays
    // queued.
    std::size_t take_up_to(std::string& out, std::size_t max_bytes);
    // The same, with the shared frames placed among `out`'s bytes in `shared` (cleared first)
    // instead of copied: for a gathered write.
    std::size_t take_up_to(std::string& out, SharedFrames& shared, std::size_t max_bytes);
    // Puts messages a write could not send back in front of the queued ones (at a stop).
    void return_unsent(std::string_view encoded_frames);
    void clear();
    // Gives the buffer's memory back when it is empty and larger than an idle client needs.
    void release_memory_if_empty();
    // Gives the buffer's memory back when it is empty, whatever its size (the client is idle).
    void release_all_memory_if_empty();

  private:
    // What only some queues hold at times, behind one pointer so that an idle client's queue
    // stays three words.
    struct Rare {
        std::string control;  // control frames waiting
        SharedFrames shared;  // shared frames placed among bytes_ (offsets into bytes_)
    };
    bool has_shared() const { return rare_ != nullptr && !rare_->shared.empty(); }
    Rare& rare();
    void make_room(std::size_t frame_size, std::size_t max_bytes, std::size_t& dropped);
    std::size_t drop_oldest_message();
    void compact_if_worthwhile();
    void release_rare_if_unused() const;

    // Mutable for messages(), which flattens shared frames in place.
    mutable std::string bytes_;
    mutable std::size_t head_ = 0;  // bytes before head_ were dropped but not yet compacted away
    mutable std::unique_ptr<Rare> rare_;  // allocated only while control or shared frames wait
};

}  // namespace pubsubx
