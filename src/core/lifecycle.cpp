#include "pubsubx/core/lifecycle.hpp"

#include <algorithm>

#include "pubsubx/protocol.hpp"

namespace pubsubx {

std::string_view state_name(ClientState state) {
    switch (state) {
        case ClientState::connected:
            return "connected";
        case ClientState::lost:
            return "lost";
        case ClientState::removed:
            return "removed";
    }
    return "?";
}

Lifecycle::Lifecycle(const BrokerConfig& config, Logger& logger, BrokerStats& stats,
                     Effects& effects, Routing& routing, QueueAccounting& accounting)
    : config_(config),
      logger_(logger),
      stats_(stats),
      effects_(effects),
      routing_(routing),
      accounting_(accounting) {}

Lifecycle::~Lifecycle() = default;

Client* Lifecycle::find(std::string_view name) {
    const auto found = clients_.find(name);
    return found == clients_.end() ? nullptr : found->second.get();
}

const Client* Lifecycle::find(std::string_view name) const {
    const auto found = clients_.find(name);
    return found == clients_.end() ? nullptr : found->second.get();
}

void Lifecycle::attach(Connection& connection, Client& client) {
    connection.client_ = &client;
    client.connection_ = &connection;
    client.state_ = ClientState::connected;
}

Connection* Lifecycle::detach(Client& client) {
    Connection* const connection = client.connection_;
    connection->client_ = nullptr;
    client.connection_ = nullptr;
    return connection;
}

Client& Lifecycle::admit(Connection& connection, std::string_view name, std::string_view secret) {
    auto owned = std::make_unique<Client>(std::string{name}, ++last_client_id_);
    Client& client = *owned;
    if (!secret.empty()) {
        client.credentials_ =
            std::make_unique<Credentials>(Credentials{SecretDigest::of(secret), {}});
    }
    clients_.emplace(client.name(), std::move(owned));
    attach(connection, client);
    if (persistence_ != nullptr) {
        persistence_->client_saved(client);
    }
    std::string reply;
    append_frame(reply, kConnAccepted);
    accounting_.deliver_reply(client, reply);
    logger_.info("Client '", client.name(), "' added", secret.empty() ? "" : " (with a secret)");
    return client;
}

void Lifecycle::reply_restored(Client& client) {
    std::string reply;
    reply.append(kRestoredPrefix).append(client.name()).append(kDelimiter);
    for (std::size_t i = 0; i < client.subscriptions_.size(); ++i) {
        if (i > 0) {
            reply.push_back(' ');
        }
        reply.append(client.subscriptions_[i].topic->name());
    }
    reply.append(kDelimiter);
    accounting_.deliver_reply(client, reply);
}

void Lifecycle::restore(Connection& connection, Client& client, TimePoint now,
                        std::string_view secret) {
    const std::uint64_t loss_id = client.lost_->loss_id;
    accounting_.client_attached(client, true, now);
    lost_.erase(client.lost_);
    attach(connection, client);
    // A client without a secret keeps the first one a resume gives.
    const bool adopts_secret = client.credentials_ == nullptr && !secret.empty();
    if (adopts_secret) {
        client.credentials_ =
            std::make_unique<Credentials>(Credentials{SecretDigest::of(secret), {}});
    }
    hold_until_durable(connection, client);
    if (persistence_ != nullptr) {
        persistence_->queue_handed_over(client);
        if (adopts_secret) {
            persistence_->client_saved(client);
        }
    }
    ++stats_.clients_restored;
    reply_restored(client);
    logger_.info("Client '", client.name(), "' restored with ", client.subscriptions_.size(),
                 " subscription(s) and ", client.outbound_.message_count(),
                 " queued message(s) (loss #", loss_id, ")");
}

void Lifecycle::take_over(Connection& connection, Client& client, TimePoint now) {
    accounting_.client_detached(client, false);
    Connection* const old = detach(client);
    effects_.close.push_back({old, "taken over by a new connection with the client's secret"});
    accounting_.client_attached(client, false, now);
    attach(connection, client);
    // A restore moments ago may be waiting for the store to commit its hand-over: the new
    // connection waits as the old one did.
    hold_until_durable(connection, client);
    ++stats_.sessions_taken_over;
    ++stats_.clients_restored;
    reply_restored(client);
    logger_.info("Client '", client.name(),
                 "' resumed with its secret while connected: closing its old connection");
}

void Lifecycle::lose(Client& client, TimePoint now, std::string_view why) {
    ++stats_.clients_lost;
    if (config_.lost_timeout <= Clock::duration::zero()) {
        remove(client, std::string{why} + "; lost, and the retention period is 0");
        return;
    }
    detach(client);
    keep_as_lost(client, now);
    accounting_.client_detached(client, true);
    if (persistence_ != nullptr && client.outbound_.message_bytes() > 0) {
        persistence_->messages_kept(client, client.outbound_.messages());
    }
    logger_.info("Client '", client.name(), "' lost; keeping its ", client.subscriptions_.size(),
                 " subscription(s) and ", client.outbound_.message_count(),
                 " queued message(s) for ", seconds_text(config_.lost_timeout), " (loss #",
                 last_loss_id_, ": ", why, ")");
    if (config_.max_lost_clients != 0 && lost_.size() > config_.max_lost_clients) {
        evict_longest_lost();
    }
}

Client* Lifecycle::recover(std::uint64_t id, std::string_view name,
                           const std::optional<SecretDigest>& secret, TimePoint now) {
    if (id == 0) {
        id = ++last_client_id_;  // handed over by another node, which numbers its own
    }
    ids_start_after(id);
    // The store's names are unique; a second record of a name is not kept twice.
    if (config_.lost_timeout <= Clock::duration::zero() || find(name) != nullptr) {
        return nullptr;
    }
    auto owned = std::make_unique<Client>(std::string{name}, id);
    Client& client = *owned;
    if (secret) {
        client.credentials_ = std::make_unique<Credentials>(Credentials{*secret, {}});
    }
    clients_.emplace(client.name(), std::move(owned));
    keep_as_lost(client, now);
    ++stats_.clients_recovered;
    if (config_.max_lost_clients != 0 && lost_.size() > config_.max_lost_clients) {
        evict_longest_lost();
    }
    return find(name);
}

// A queue the store kept goes out once the store has committed its hand-over (the server asks
// the store whether the connection must wait at all).
void Lifecycle::hold_until_durable(Connection& connection, const Client& client) {
    if (persistence_ != nullptr && client.outbound_.message_bytes() > 0) {
        effects_.hold_until_durable.push_back(&connection);
    }
}

// Lists the client among the lost, with the deadline of a whole retention period from `now`.
void Lifecycle::keep_as_lost(Client& client, TimePoint now) {
    // Deadlines must ascend along the list; the clock never goes back, but callers' "now" may
    // differ by a little, so a later loss never gets an earlier deadline.
    TimePoint deadline = now + config_.lost_timeout;
    if (!lost_.empty()) {
        deadline = std::max(deadline, lost_.back().deadline);
    }
    client.lost_ =
        lost_.insert(lost_.end(), LostRecord{&client, ++last_loss_id_, now, deadline, false, {}});
    client.state_ = ClientState::lost;
    if (!(expiry_promised_ && *expiry_promised_ <= deadline) &&
        !(effects_.arm_expiry && *effects_.arm_expiry <= deadline)) {
        effects_.arm_expiry = deadline;
    }
}

void Lifecycle::evict_longest_lost() {
    Client& client = *lost_.front().client;
    ++stats_.lost_clients_evicted;
    remove(client, "more than " + std::to_string(config_.max_lost_clients) +
                       " lost clients; the longest lost is removed first, " +
                       std::to_string(client.outbound_.message_count()) +
                       " queued message(s) discarded");
}

void Lifecycle::remove(Client& client, std::string_view why) {
    routing_.unsubscribe_all(client);
    accounting_.client_removed(client);
    if (client.state_ == ClientState::connected) {
        detach(client);
    } else if (client.state_ == ClientState::lost) {
        lost_.erase(client.lost_);
    }
    client.state_ = ClientState::removed;
    if (persistence_ != nullptr) {
        persistence_->client_removed(client);
    }
    if (cluster_ != nullptr) {
        cluster_->client_removed(client);
    }
    logger_.info("Client '", client.name(), "' removed (", why, ")");
    clients_.erase(std::string_view{client.name()});
}

void Lifecycle::expire(TimePoint now) {
    if (expiry_promised_ && *expiry_promised_ <= now) {
        expiry_promised_.reset();  // the timer that promised it has fired
    }
    while (!lost_.empty() && lost_.front().deadline <= now) {
        Client& client = *lost_.front().client;
        ++stats_.clients_expired;
        remove(client, "retention period of " + seconds_text(config_.lost_timeout) + " ended, " +
                           std::to_string(client.outbound_.message_count()) +
                           " queued message(s) discarded");
    }
    if (!lost_.empty() && !expiry_promised_) {
        effects_.arm_expiry = lost_.front().deadline;
    }
}

void Lifecycle::expiry_promised(TimePoint when) {
    if (!expiry_promised_ || when < *expiry_promised_) {
        expiry_promised_ = when;
    }
}

std::optional<TimePoint> Lifecycle::next_expiry() const {
    if (lost_.empty()) {
        return std::nullopt;
    }
    return lost_.front().deadline;
}

std::string Lifecycle::check_consistency() const {
    std::size_t lost = 0;
    for (const auto& [name, client] : clients_) {
        if (name != client->name()) {
            return "client map key differs from the name '" + client->name() + "'";
        }
        switch (client->state_) {
            case ClientState::connected:
                if (client->connection_ == nullptr ||
                    client->connection_->client() != client.get()) {
                    return "connected client '" + client->name() + "' and its connection disagree";
                }
                break;
            case ClientState::lost:
                ++lost;
                if (client->connection() != nullptr || client->lost_->client != client.get()) {
                    return "lost client '" + client->name() +
                           "' has a connection or a foreign record";
                }
                if (client->in_flight_bytes_ != 0 || client->outbound_.control_bytes() != 0) {
                    return "lost client '" + client->name() + "' holds a write or control frames";
                }
                break;
            case ClientState::removed:
                return "removed client '" + client->name() + "' is still registered";
        }
    }
    if (lost != lost_.size()) {
        return "lost clients " + std::to_string(lost) + " != lost records " +
               std::to_string(lost_.size());
    }
    const LostRecord* previous = nullptr;
    for (const LostRecord& record : lost_) {
        if (record.deadline < record.lost_at + config_.lost_timeout) {
            return "lost client '" + record.client->name() + "' would expire early";
        }
        if (previous != nullptr &&
            (record.loss_id <= previous->loss_id || record.deadline < previous->deadline)) {
            return "the lost list is out of order at '" + record.client->name() + "'";
        }
        previous = &record;
    }
    // The server owes an expiry at or before the first deadline: armed already, or asked for.
    if (!lost_.empty()) {
        const TimePoint first = lost_.front().deadline;
        const bool armed = expiry_promised_ && *expiry_promised_ <= first;
        const bool asked = effects_.arm_expiry && *effects_.arm_expiry <= first;
        if (!armed && !asked) {
            return "a lost client has no expiry armed at or before its deadline";
        }
    }
    return {};
}

}  // namespace pubsubx
