#include "pubsubx/outbound_queue.hpp"

#include <limits>

#include "pubsubx/protocol.hpp"

namespace pubsubx {

namespace {
// An empty queue keeps at most this much capacity; more is returned to the allocator so that
// an idle client costs little memory after a burst.
constexpr std::size_t kIdleCapacity = 16 * 1024;
// Taken or dropped entries at the front of SharedFrames::placed are erased once they are this
// many and at least half of the list (amortised O(1) per frame).
constexpr std::size_t kSpentEntries = 64;
}  // namespace

void SharedFrames::clear() {
    placed.clear();
    first = 0;
    bytes = 0;
}

void SharedFrames::erase_spent() {
    if (first >= kSpentEntries && 2 * first >= placed.size()) {
        placed.erase(placed.begin(), placed.begin() + static_cast<std::ptrdiff_t>(first));
        first = 0;
        // After a burst, a queue that keeps pace without emptying would keep the list's
        // capacity for the whole burst (found in review).
        if (placed.capacity() > 4 * placed.size() + kSpentEntries) {
            placed.shrink_to_fit();
        }
    }
}

void SharedFrames::shift(std::ptrdiff_t delta) {
    for (std::size_t i = first; i < placed.size(); ++i) {
        placed[i].at = static_cast<std::size_t>(static_cast<std::ptrdiff_t>(placed[i].at) + delta);
    }
}

void SharedFrames::append_flattened(std::string& out, std::string_view inline_bytes,
                                    std::size_t from) const {
    for_each_piece(inline_bytes, from, [&](std::string_view piece) { out.append(piece); });
}

void SharedFrames::merge_into(std::string& inline_bytes, std::size_t from) {
    if (empty()) {
        inline_bytes.erase(0, from);
        return;
    }
    std::string merged;
    merged.reserve(inline_bytes.size() - from + bytes);
    append_flattened(merged, inline_bytes, from);
    inline_bytes.swap(merged);
    clear();
}

std::size_t OutboundQueue::push(std::string_view encoded_frame, std::size_t max_bytes) {
    if (encoded_frame.size() > max_bytes) {
        return 1;
    }
    std::size_t dropped = 0;
    make_room(encoded_frame.size(), max_bytes, dropped);
    bytes_.append(encoded_frame);
    return dropped;
}

std::size_t OutboundQueue::push_shared(const SharedFrame& frame, std::size_t max_bytes) {
    if (frame->size() > max_bytes) {
        return 1;
    }
    std::size_t dropped = 0;
    make_room(frame->size(), max_bytes, dropped);
    append_shared(frame);
    return dropped;
}

void OutboundQueue::append_shared(const SharedFrame& frame) {
    SharedFrames& shared = rare().shared;
    shared.placed.push_back({bytes_.size(), frame});
    shared.bytes += frame->size();
}

OutboundQueue::Rare& OutboundQueue::rare() {
    if (rare_ == nullptr) {
        rare_ = std::make_unique<Rare>();
    }
    return *rare_;
}

inline void OutboundQueue::make_room(std::size_t frame_size, std::size_t max_bytes,
                                     std::size_t& dropped) {
    while (message_bytes() + frame_size > max_bytes) {
        drop_oldest_message();
        ++dropped;
    }
    if (dropped > 0) {
        compact_if_worthwhile();
    }
}

OutboundQueue::Dropped OutboundQueue::drop_oldest(std::size_t bytes) {
    Dropped dropped;
    while (dropped.bytes < bytes && message_bytes() > 0) {
        dropped.bytes += drop_oldest_message();
        ++dropped.messages;
    }
    compact_if_worthwhile();
    return dropped;
}

void OutboundQueue::push_control(std::string_view encoded_frames) {
    rare().control.append(encoded_frames);
}

void OutboundQueue::discard_control() {
    if (rare_ != nullptr) {
        std::string{}.swap(rare_->control);
        release_rare_if_unused();
    }
}

std::string OutboundQueue::take_control() {
    std::string frames;
    if (rare_ != nullptr) {
        frames.swap(rare_->control);
        release_rare_if_unused();
    }
    return frames;
}

std::string_view OutboundQueue::messages() const {
    flatten();
    return std::string_view{bytes_}.substr(head_);
}

void OutboundQueue::flatten() const {
    if (!has_shared()) {
        return;
    }
    rare_->shared.merge_into(bytes_, head_);
    head_ = 0;
    release_rare_if_unused();
}

std::size_t OutboundQueue::message_count() const {
    return count_frames(std::string_view{bytes_}.substr(head_)) +
           (rare_ == nullptr ? 0 : rare_->shared.count());
}

std::size_t OutboundQueue::memory_held() const {
    // A std::string's capacity beyond its inline buffer is on the heap.
    const std::size_t inline_capacity = std::string{}.capacity();
    std::size_t held = bytes_.capacity() > inline_capacity ? bytes_.capacity() + 1 : 0;
    if (rare_ != nullptr) {
        held += sizeof(Rare) + rare_->shared.placed.capacity() * sizeof(SharedFrames::Placed);
        if (rare_->control.capacity() > inline_capacity) {
            held += rare_->control.capacity() + 1;
        }
        // Shared frames count whole for every queue that holds them, as the bounds count them.
        held += rare_->shared.bytes;
    }
    return held;
}

std::size_t OutboundQueue::take_all(std::string& out) {
    SharedFrames shared;
    const std::size_t control = take_all(out, shared);
    shared.merge_into(out);
    return control;
}

std::size_t OutboundQueue::take_all(std::string& out, SharedFrames& shared) {
    out.clear();
    shared.clear();
    const std::size_t control = control_bytes();
    if (control > 0) {
        // The control frames take the place of the dropped prefix in the message buffer,
        // whose pages are already in use: a restored backlog is moved once, not copied into
        // a new buffer (measured: the drain of 10,000 restored messages took 0.2 ms longer).
        rare_->shared.shift(static_cast<std::ptrdiff_t>(control) -
                            static_cast<std::ptrdiff_t>(head_));
        bytes_.replace(0, head_, rare_->control);
        out.swap(bytes_);
    } else if (head_ == 0) {
        out.swap(bytes_);
    } else {
        out.append(bytes_, head_);
        if (rare_ != nullptr) {
            rare_->shared.shift(-static_cast<std::ptrdiff_t>(head_));
        }
        bytes_.clear();
    }
    head_ = 0;
    if (rare_ != nullptr) {
        shared = std::move(rare_->shared);
        rare_.reset();
    }
    return control;
}

std::size_t OutboundQueue::take_up_to(std::string& out, std::size_t max_bytes) {
    SharedFrames shared;
    const std::size_t control = take_up_to(out, shared, max_bytes);
    shared.merge_into(out);
    return control;
}

std::size_t OutboundQueue::take_up_to(std::string& out, SharedFrames& shared,
                                      std::size_t max_bytes) {
    if (message_bytes() <= max_bytes) {
        return take_all(out, shared);
    }
    out.clear();
    shared.clear();
    const std::size_t control = control_bytes();
    if (control > 0) {
        out.swap(rare_->control);
        std::string{}.swap(rare_->control);
    }
    // The whole messages, inline or shared, in order, that fit in max_bytes, or the first one.
    const std::string_view queued{bytes_};
    const SharedFrames* const placed = has_shared() ? &rare_->shared : nullptr;
    std::size_t next_shared = placed == nullptr ? 0 : placed->first;
    const std::size_t shared_end = placed == nullptr ? 0 : placed->placed.size();
    std::size_t at = head_;
    std::size_t taken = 0;
    for (;;) {
        std::size_t size = 0;
        const bool is_shared = next_shared < shared_end && placed->placed[next_shared].at == at;
        if (is_shared) {
            size = placed->placed[next_shared].frame->size();
        } else {
            const std::size_t end = find_delimiter(queued, at);
            if (end == std::string_view::npos) {
                break;
            }
            size = end + kDelimiter.size() - at;
        }
        if (taken + size > max_bytes && taken > 0) {
            break;
        }
        taken += size;
        if (is_shared) {
            ++next_shared;
        } else {
            at += size;
        }
    }
    out.append(queued.substr(head_, at - head_));
    if (placed != nullptr) {
        SharedFrames& own = rare_->shared;
        for (std::size_t i = own.first; i < next_shared; ++i) {
            shared.placed.push_back(
                {own.placed[i].at - head_ + control, std::move(own.placed[i].frame)});
            shared.bytes += shared.placed.back().frame->size();
        }
        own.bytes -= shared.bytes;
        own.first = next_shared;
        if (own.empty()) {
            own.clear();
        } else {
            own.erase_spent();  // a queue that never empties must not keep them all
        }
    }
    head_ = at;
    compact_if_worthwhile();
    release_rare_if_unused();
    return control;
}

void OutboundQueue::return_unsent(std::string_view encoded_frames) {
    flatten();  // rare: at a stop with a durable store
    if (head_ >= encoded_frames.size()) {
        head_ -= encoded_frames.size();
        bytes_.replace(head_, encoded_frames.size(), encoded_frames);
    } else {
        bytes_.replace(0, head_, encoded_frames);
        head_ = 0;
    }
}

void OutboundQueue::clear() {
    bytes_.clear();
    head_ = 0;
    rare_.reset();
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

std::size_t OutboundQueue::drop_oldest_message() {
    if (has_shared()) {
        SharedFrames& shared = rare_->shared;
        SharedFrames::Placed& oldest = shared.placed[shared.first];
        if (oldest.at == head_) {
            const std::size_t dropped = oldest.frame->size();
            oldest.frame.reset();
            shared.bytes -= dropped;
            if (++shared.first == shared.placed.size()) {
                shared.clear();
                release_rare_if_unused();
            } else {
                shared.erase_spent();
            }
            return dropped;
        }
    }
    const std::size_t end = find_delimiter(bytes_, head_);
    // Every queued message ends with a delimiter, so one is always found while any is queued.
    const std::size_t next = end == std::string::npos ? bytes_.size() : end + kDelimiter.size();
    const std::size_t dropped = next - head_;
    head_ = next;
    if (head_ == bytes_.size()) {
        if (rare_ != nullptr) {
            rare_->shared.shift(-static_cast<std::ptrdiff_t>(head_));
        }
        bytes_.clear();
        head_ = 0;
    }
    return dropped;
}

// Compacting costs a copy of the live bytes; doing it only once the dropped bytes are as many
// keeps dropping O(1) amortised and the dead bytes at most the live ones (+ one frame).
void OutboundQueue::compact_if_worthwhile() {
    if (head_ == 0 || head_ < bytes_.size() - head_) {
        return;
    }
    bytes_.erase(0, head_);
    if (rare_ != nullptr) {
        rare_->shared.shift(-static_cast<std::ptrdiff_t>(head_));
    }
    head_ = 0;
    if (bytes_.capacity() > 2 * bytes_.size() + kSpareCapacity) {
        bytes_.shrink_to_fit();
    }
}

void OutboundQueue::release_rare_if_unused() const {
    if (rare_ != nullptr && rare_->control.empty() && rare_->shared.empty()) {
        rare_.reset();
    }
}

}  // namespace pubsubx
