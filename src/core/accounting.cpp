#include "pubsubx/core/accounting.hpp"

#include <algorithm>
#include <limits>

namespace pubsubx {

namespace {
std::size_t room_in(std::size_t limit, std::size_t used) {
    return limit > used ? limit - used : 0;
}
std::size_t in_flight_messages(const Client& client) {
    return client.held_message_bytes() - client.outbound().message_bytes();
}
}  // namespace

QueueAccounting::QueueAccounting(const BrokerConfig& config, Logger& logger, BrokerStats& stats,
                                 Effects& effects)
    : config_(config),
      logger_(logger),
      stats_(stats),
      effects_(effects),
      queue_bound_(config.max_queue_bytes == 0 ? std::numeric_limits<std::size_t>::max()
                                               : config.max_queue_bytes) {}

void QueueAccounting::refresh_queue_bound() {
    queue_bound_ = config_.max_queue_bytes == 0 ? std::numeric_limits<std::size_t>::max()
                                                : config_.max_queue_bytes;
}

std::size_t QueueAccounting::lost_clients_share_of_cap() const {
    return config_.max_total_queue_bytes / 4 * 3;
}

// The most the client's queue may hold now: its own bound less its write in flight, and what
// the global cap (and, for a lost client, the lost share) leaves beside everyone else's bytes.
std::size_t QueueAccounting::bound_for(const Client& client) const {
    const std::size_t own = client.outbound_.message_bytes();
    std::size_t bound = room_in(queue_bound_, in_flight_messages(client));
    if (config_.max_total_queue_bytes != 0) {
        bound = std::min(bound, room_in(config_.max_total_queue_bytes, total_bytes_ - own));
        if (client.state_ == ClientState::lost) {
            bound = std::min(bound, room_in(lost_clients_share_of_cap(), lost_bytes_ - own));
        }
    }
    return bound;
}

// `shared`, when given, holds the same bytes as `encoded_frame`: the queue keeps a reference.
[[gnu::always_inline]] inline void QueueAccounting::queue_message(Client& client,
                                                                  std::string_view encoded_frame,
                                                                  const SharedFrame* shared,
                                                                  TimePoint now) {
    OutboundQueue& queue = client.outbound_;
    const std::size_t before = queue.size();
    if (fits_without_drops(client, encoded_frame.size())) {
        // The common case, far from every bound: no room to compute, nothing to drop.
        if (shared != nullptr) {
            queue.append_shared(*shared);
        } else {
            queue.append(encoded_frame);
        }
        total_bytes_ += encoded_frame.size();
        if (client.state_ == ClientState::lost) {
            lost_bytes_ += encoded_frame.size();
            if (persistence_ != nullptr) {
                persistence_->messages_kept(client, encoded_frame);
            }
        }
        if (before == 0) {
            became_non_empty(client);
        }
        return;
    }
    const std::size_t own_bound = room_in(queue_bound_, in_flight_messages(client));
    std::size_t bound = bound_for(client);
    if (bound < own_bound && bound < encoded_frame.size() &&
        make_room_elsewhere(client, encoded_frame.size() - bound, now)) {
        bound = bound_for(client);
    }
    const bool capped = bound < own_bound;
    const std::size_t dropped =
        shared != nullptr ? queue.push_shared(*shared, bound) : queue.push(encoded_frame, bound);
    changed(client, before);
    if (persistence_ != nullptr && client.state_ == ClientState::lost) {
        persist_push(client, encoded_frame, dropped, encoded_frame.size() <= bound);
    }
    if (dropped > 0) {
        count_drops(client, dropped, capped, now);
    }
    if (before == 0 && !queue.empty()) {
        became_non_empty(client);
    }
}

void QueueAccounting::deliver(Client& client, std::string_view encoded_frame, TimePoint now) {
    queue_message(client, encoded_frame, nullptr, now);
}

// Only a connected client's queue holds references: a lost client's stays contiguous, for the
// store and a handover (flattened when it became lost).
void QueueAccounting::deliver_shared(Client& client, const SharedFrame& frame, TimePoint now) {
    queue_message(client, *frame, client.state_ == ClientState::connected ? &frame : nullptr, now);
}

// A push within a bound: either the oldest messages went to make room for the new one, or the
// new one alone was dropped, larger than the bound (OutboundQueue::push).
void QueueAccounting::persist_push(const Client& client, std::string_view encoded_frame,
                                   std::size_t dropped, bool kept) {
    const std::size_t oldest_dropped = kept ? dropped : 0;
    if (oldest_dropped > 0) {
        persistence_->oldest_dropped(client, oldest_dropped);
    }
    if (kept) {
        persistence_->messages_kept(client, encoded_frame);
    }
}

bool QueueAccounting::fits_without_drops(const Client& client, std::size_t frame_size) const {
    if (client.held_message_bytes() + frame_size > queue_bound_) {
        return false;
    }
    const std::size_t cap = config_.max_total_queue_bytes;
    return cap == 0 || (total_bytes_ + frame_size <= cap &&
                        (client.state_ != ClientState::lost ||
                         lost_bytes_ + frame_size <= lost_clients_share_of_cap()));
}

void QueueAccounting::became_non_empty(Client& client) {
    if (client.state_ == ClientState::connected) {
        effects_.flush.push_back(client.connection_);
    } else {
        track_holder(client);
    }
}

// A cap leaves the client no room for the new message even with its own queue emptied: the
// lost clients that have held messages longest give up their oldest ones. Connected clients
// never give up bytes for others. True if anything was freed.
bool QueueAccounting::make_room_elsewhere(const Client& client, std::size_t needed, TimePoint now) {
    std::size_t freed = 0;
    auto next = holders_.begin();
    while (freed < needed && next != holders_.end()) {
        Client& holder = **next++;
        if (&holder == &client) {
            continue;
        }
        const std::size_t before = holder.outbound_.size();
        const OutboundQueue::Dropped dropped = holder.outbound_.drop_oldest(needed - freed);
        freed += dropped.bytes;
        changed(holder, before);
        if (persistence_ != nullptr) {
            persistence_->oldest_dropped(holder, dropped.messages);
        }
        count_drops(holder, dropped.messages, true, now);
        if (holder.outbound_.message_bytes() == 0) {
            untrack_holder(holder);
        }
    }
    return freed > 0;
}

void QueueAccounting::deliver_reply(Client& client, std::string_view encoded_frames) {
    client.queued_reply_bytes_ += static_cast<std::uint32_t>(encoded_frames.size());
    deliver_control(client, encoded_frames);
}

void QueueAccounting::deliver_control(Client& client, std::string_view encoded_frames) {
    OutboundQueue& queue = client.outbound_;
    const std::size_t before = queue.size();
    queue.push_control(encoded_frames);
    changed(client, before);
    // Always: a RESTORED reply goes before a backlog that nobody was writing.
    effects_.flush.push_back(client.connection_);
    // Only while a write is in flight: replies to one read's worth of commands all go out in
    // the write that follows it, whatever their number.
    if (client.in_flight_bytes_ > 0 &&
        queue.control_bytes() - client.queued_reply_bytes_ > kMaxControlBacklog &&
        !client.listed_slow_) {
        client.listed_slow_ = true;
        cut_offs_.push_back({&client, CutOff::Why::control_backlog});
    }
}

// A write takes at most half the client's bound, so that the newest messages always find room
// beside the write in flight instead of being dropped until it completes.
void QueueAccounting::take_for_write(Client& client, std::string& out, SharedFrames& shared) {
    const std::size_t control = client.outbound_.take_up_to(out, shared, queue_bound_ / 2);
    client.in_flight_bytes_ += out.size() + shared.bytes;
    client.in_flight_control_bytes_ += static_cast<std::uint32_t>(control);
    client.dropped_since_write_start_ = false;
    client.queued_reply_bytes_ = 0;
}

std::string QueueAccounting::take_control(Client& client) {
    const std::size_t before = client.outbound_.size();
    std::string frames = client.outbound_.take_control();
    client.queued_reply_bytes_ = 0;
    changed(client, before);
    return frames;
}

void QueueAccounting::write_completed(Client& client, TimePoint now, std::size_t socket_unsent) {
    total_bytes_ -= client.in_flight_bytes_;
    client.in_flight_bytes_ = 0;
    client.in_flight_control_bytes_ = 0;
    released();
    if (!client.dropped_since_write_start_) {
        end_episode_if_drained(client, now, socket_unsent);
    }
}

void QueueAccounting::write_interrupted(Client& client, std::string_view written,
                                        std::size_t unsent_from) {
    // The control frames went first, and answered this connection only.
    const std::size_t messages_from =
        std::max<std::size_t>(unsent_from, client.in_flight_control_bytes_);
    const std::string_view unsent =
        messages_from < written.size() ? written.substr(messages_from) : std::string_view{};
    total_bytes_ -= client.in_flight_bytes_;
    client.in_flight_bytes_ = 0;
    client.in_flight_control_bytes_ = 0;
    client.outbound_.return_unsent(unsent);
    total_bytes_ += unsent.size();
}

// An overflow episode ends only when everything is out, nothing was dropped while it went
// out, and the socket has (nearly) nothing left: not when a write starts.
void QueueAccounting::end_episode_if_drained(Client& client, TimePoint now,
                                             std::size_t socket_unsent) {
    if (client.dropped_in_episode_ > 0 && client.outbound_.empty() &&
        client.in_flight_bytes_ == 0 && socket_unsent <= kCaughtUpSocketBytes) {
        logger_.info("Client '", client.name_, "' caught up after ",
                     seconds_text(now - client.overflow_since_), "; ", client.dropped_in_episode_,
                     " message(s) were dropped while its queue was full");
        client.dropped_in_episode_ = 0;
    }
}

void QueueAccounting::client_detached(Client& client, bool becomes_lost) {
    // The write in flight dies with the connection, and so do answers meant for it.
    total_bytes_ -= client.in_flight_bytes_;
    client.in_flight_bytes_ = 0;
    client.in_flight_control_bytes_ = 0;
    const std::size_t before = client.outbound_.size();
    client.outbound_.discard_control();
    client.queued_reply_bytes_ = 0;
    total_bytes_ -= before - client.outbound_.size();
    client.listed_slow_ = false;
    if (becomes_lost) {
        // A lost client's queue is contiguous (the store, a handover, make_room_elsewhere).
        client.outbound_.flatten();
        lost_bytes_ += client.outbound_.size();
        client.outbound_.release_memory_if_empty();
        if (client.outbound_.message_bytes() > 0) {
            track_holder(client);
        }
    }
    released();
}

void QueueAccounting::client_attached(Client& client, bool was_lost, TimePoint now) {
    if (was_lost) {
        lost_bytes_ -= client.outbound_.size();
        untrack_holder(client);
    }
    // A backlog that overflowed while lost gets a new grace period to be read.
    if (client.dropped_in_episode_ > 0) {
        client.overflow_since_ = now;
    }
}

void QueueAccounting::client_removed(Client& client) {
    if (client.state_ == ClientState::lost) {
        lost_bytes_ -= client.outbound_.size();
        untrack_holder(client);
    }
    total_bytes_ -= client.held_bytes();
    client.in_flight_bytes_ = 0;
    client.in_flight_control_bytes_ = 0;
    client.outbound_.clear();
    released();
}

std::vector<CutOff> QueueAccounting::take_cut_offs() {
    std::vector<CutOff> taken;
    taken.swap(cut_offs_);
    return taken;
}

void QueueAccounting::count_drops(Client& client, std::size_t dropped, bool capped, TimePoint now) {
    stats_.dropped += dropped;
    if (capped) {
        stats_.dropped_global_cap += dropped;
        if (!global_cap_reached_) {
            global_cap_reached_ = true;
            logger_.error("Queued bytes of all clients reached the global cap (",
                          config_.max_total_queue_bytes, " bytes, of which lost clients may hold ",
                          lost_clients_share_of_cap(),
                          "): dropping the oldest messages, of lost clients first");
        }
    }
    client.dropped_since_write_start_ = true;
    if (client.dropped_in_episode_ == 0) {
        client.overflow_since_ = now;
        logger_.error("Queue of client '", client.name_, "' is full at ", client.held_bytes(),
                      " bytes: dropping its oldest messages");
    }
    client.dropped_in_episode_ += static_cast<std::uint32_t>(std::min<std::size_t>(
        dropped, std::numeric_limits<std::uint32_t>::max() - client.dropped_in_episode_));
    // The grace runs from the first drop of the episode, whatever writes start meanwhile.
    const bool grace_over = config_.slow_consumer_grace > Clock::duration::zero() &&
                            now - client.overflow_since_ >= config_.slow_consumer_grace;
    if (grace_over && client.state_ == ClientState::connected && !client.listed_slow_) {
        client.listed_slow_ = true;
        cut_offs_.push_back({&client, CutOff::Why::slow_consumer});
    }
}

void QueueAccounting::track_holder(Client& client) {
    LostRecord& record = *client.lost_;
    if (!record.holds_bytes) {
        record.holder = holders_.insert(holders_.end(), &client);
        record.holds_bytes = true;
    }
}

void QueueAccounting::untrack_holder(Client& client) {
    LostRecord& record = *client.lost_;
    if (record.holds_bytes) {
        holders_.erase(record.holder);
        record.holds_bytes = false;
    }
}

void QueueAccounting::changed(Client& client, std::size_t before) {
    const std::size_t after = client.outbound_.size();
    total_bytes_ = total_bytes_ - before + after;
    if (client.state_ == ClientState::lost) {
        lost_bytes_ = lost_bytes_ - before + after;
    }
    if (after < before) {
        released();
    }
}

// The "cap reached" episode ends once the bytes held fall well below the cap again, whoever
// released them.
void QueueAccounting::released() {
    if (global_cap_reached_ && total_bytes_ <= config_.max_total_queue_bytes / 2) {
        global_cap_reached_ = false;
    }
}

std::string QueueAccounting::check_consistency(std::size_t held, std::size_t lost_held,
                                               std::size_t lost_holders) const {
    if (held != total_bytes_) {
        return "total held bytes " + std::to_string(total_bytes_) + " != " + std::to_string(held);
    }
    if (lost_held != lost_bytes_) {
        return "lost clients' held bytes " + std::to_string(lost_bytes_) +
               " != " + std::to_string(lost_held);
    }
    if (lost_holders != holders_.size()) {
        return "lost holders listed " + std::to_string(holders_.size()) +
               " != " + std::to_string(lost_holders);
    }
    for (const Client* holder : holders_) {
        if (holder->state() != ClientState::lost || holder->outbound().message_bytes() == 0) {
            return "holder '" + holder->name() + "' is not a lost client with messages";
        }
    }
    return {};
}

}  // namespace pubsubx
