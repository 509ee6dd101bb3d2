// Accounting: every byte the broker holds for a client, queued or in a write in flight,
// against the per-client bound, the global cap and the lost clients' share of it; drops, the
// overflow episodes of each client and the slow consumers they reveal.
#pragma once

#include <cstddef>
#include <list>
#include <string>
#include <string_view>
#include <vector>

#include "pubsubx/core/client.hpp"
#include "pubsubx/core/config.hpp"
#include "pubsubx/core/effects.hpp"
#include "pubsubx/core/persistence.hpp"
#include "pubsubx/log.hpp"

namespace pubsubx {

// A connected client the core must cut off once the current frame is handled (never in the
// middle of a fan-out, which walks a topic's subscribers).
struct CutOff {
    Client* client;
    enum class Why { slow_consumer, control_backlog } why;
};

class QueueAccounting {
  public:
    // Unsent control frames a connected client may pile up (it sends commands that earn error
    // frames and never reads them); beyond it the client is cut off.
    static constexpr std::size_t kMaxControlBacklog = 64 * 1024;

    QueueAccounting(const BrokerConfig& config, Logger& logger, BrokerStats& stats,
                    Effects& effects);

    // Queues one encoded message for `client` within every bound, dropping the oldest
    // messages (its own first, then those of the longest-lost clients when a cap is the
    // limit) so that the newest is kept.
    void deliver(Client& client, std::string_view encoded_frame, TimePoint now);
    // The same for a large frame shared by its recipients: a connected client's queue keeps a
    // reference to it instead of a copy.
    void deliver_shared(Client& client, const SharedFrame& frame, TimePoint now);
    // Queues control frames for a connected client: never dropped by any bound. Error frames
    // count towards kMaxControlBacklog; the reply to a CONNECT (deliver_reply) does not,
    // however long its topic list.
    void deliver_control(Client& client, std::string_view encoded_frames);
    void deliver_reply(Client& client, std::string_view encoded_frames);

    // Moves the client's queue into `out` for writing, its shared frames into `shared` (placed
    // among out's bytes); the bytes stay held until written.
    void take_for_write(Client& client, std::string& out, SharedFrames& shared);
    // Moves the client's unsent control frames out of the accounts, for a client that leaves
    // (the caller writes them; its messages stay queued).
    std::string take_control(Client& client);
    // The write in flight completed: its bytes are no longer held. An overflow episode ends
    // when a write completes with nothing queued, nothing dropped while it went out, and at
    // most kCaughtUpSocketBytes still unread in the socket: the kernel's buffers (megabytes)
    // would otherwise hide a reader slower than the publishers.
    static constexpr std::size_t kCaughtUpSocketBytes = 64 * 1024;
    void write_completed(Client& client, TimePoint now, std::size_t socket_unsent);
    // The write in flight was stopped (the server stops): its messages from `unsent_from` on
    // (an offset into what take_for_write gave, at a frame's start) go back to the queue.
    void write_interrupted(Client& client, std::string_view written, std::size_t unsent_from);
    // Nothing is queued or being written, and the socket holds `socket_unsent`: an overflow
    // episode that the last write left open (its socket was still full) may end now.
    void end_episode_if_drained(Client& client, TimePoint now, std::size_t socket_unsent);

    // The lifecycle's edges, for the bytes each one moves.
    void client_detached(Client& client, bool becomes_lost);
    void client_attached(Client& client, bool was_lost, TimePoint now);
    void client_removed(Client& client);

    void attach_persistence(Persistence* persistence) { persistence_ = persistence; }

    std::vector<CutOff> take_cut_offs();
    bool has_cut_offs() const { return !cut_offs_.empty(); }

    std::size_t total_bytes() const { return total_bytes_; }
    std::size_t lost_bytes() const { return lost_bytes_; }
    // Lost clients together get at most three quarters of the global cap, so that clients
    // that vanished (or were made to vanish in numbers by an attacker) cannot starve the
    // connected ones.
    std::size_t lost_clients_share_of_cap() const;
    std::string check_consistency(std::size_t held, std::size_t lost_held,
                                  std::size_t lost_holders) const;

    // The configuration's max_queue_bytes changed (SIGHUP).
    void refresh_queue_bound();

  private:
    void queue_message(Client& client, std::string_view encoded_frame, const SharedFrame* shared,
                       TimePoint now);
    std::size_t bound_for(const Client& client) const;
    bool fits_without_drops(const Client& client, std::size_t frame_size) const;
    void became_non_empty(Client& client);
    bool make_room_elsewhere(const Client& client, std::size_t frame_size, TimePoint now);
    void count_drops(Client& client, std::size_t dropped, bool capped, TimePoint now);
    void persist_push(const Client& client, std::string_view encoded_frame, std::size_t dropped,
                      bool kept);
    void track_holder(Client& client);
    void untrack_holder(Client& client);
    void changed(Client& client, std::size_t before);
    void released();

    const BrokerConfig& config_;
    Logger& logger_;
    BrokerStats& stats_;
    Effects& effects_;
    std::size_t queue_bound_;  // config_.max_queue_bytes, with 0 (no limit) as the largest
    std::size_t total_bytes_ = 0;
    std::size_t lost_bytes_ = 0;  // the part of total_bytes_ lost clients hold
    // Lost clients holding messages, longest-holding first: they give up their oldest when a
    // cap leaves no room for a newer message.
    std::list<Client*> holders_;
    bool global_cap_reached_ = false;  // for one log line per episode
    std::vector<CutOff> cut_offs_;
    Persistence* persistence_ = nullptr;  // a durable store mirrors the lost clients' queues
};

}  // namespace pubsubx
