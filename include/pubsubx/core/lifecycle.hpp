// Lifecycle: the clients by name and their states. Every change of state goes through one
// function per edge, which does all of its accounting (counts, bytes, the lost list, the log
// line, the effects the server owes):
//
//   (pending connection) --admit--> connected --lose--> lost --restore--> connected
//   connected --take_over--> connected (a new connection with the client's secret)
//   connected | lost --remove--> removed (DISCONNECT, expiry, eviction)
//   (the store, at start) --recover--> lost
//
// With a durable store attached (core/persistence.hpp), the edges that change what a restart
// must bring back tell it so, here and nowhere else.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "pubsubx/core/accounting.hpp"
#include "pubsubx/core/client.hpp"
#include "pubsubx/core/cluster_link.hpp"
#include "pubsubx/core/config.hpp"
#include "pubsubx/core/effects.hpp"
#include "pubsubx/core/persistence.hpp"
#include "pubsubx/core/routing.hpp"
#include "pubsubx/log.hpp"

namespace pubsubx {

class Lifecycle {
  public:
    Lifecycle(const BrokerConfig& config, Logger& logger, BrokerStats& stats, Effects& effects,
              Routing& routing, QueueAccounting& accounting);
    ~Lifecycle();

    Client* find(std::string_view name);
    const Client* find(std::string_view name) const;

    Client& admit(Connection& connection, std::string_view name, std::string_view secret);
    // `secret` is the one the CONNECT gave: a client without a secret adopts it.
    void restore(Connection& connection, Client& client, TimePoint now, std::string_view secret);
    void take_over(Connection& connection, Client& client, TimePoint now);
    void lose(Client& client, TimePoint now, std::string_view why);
    void remove(Client& client, std::string_view why);
    // A client the store kept, lost from `now` on for a whole retention period. Its
    // subscriptions and messages are the caller's to add. Null if the retention period is 0.
    // Id 0: a client another node handed over, numbered here.
    Client* recover(std::uint64_t id, std::string_view name,
                    const std::optional<SecretDigest>& secret, TimePoint now);

    void attach_persistence(Persistence* persistence) { persistence_ = persistence; }
    void attach_cluster(ClusterLink* cluster) { cluster_ = cluster; }
    // Ids above every id the store holds, so that none is reused.
    void ids_start_after(std::uint64_t id) { last_client_id_ = std::max(last_client_id_, id); }

    // Removes the lost clients whose deadline is at or before `now`.
    void expire(TimePoint now);
    // The server took an effect to arm expiry at `when`: it will call expire() then.
    void expiry_promised(TimePoint when);
    std::optional<TimePoint> next_expiry() const;

    std::size_t client_count() const { return clients_.size(); }
    std::size_t lost_count() const { return lost_.size(); }
    std::string check_consistency() const;
    template <typename Visit>
    void for_each_client(Visit&& visit) const {
        for (const auto& entry : clients_) {
            visit(*entry.second);
        }
    }

  private:
    void attach(Connection& connection, Client& client);
    Connection* detach(Client& client);
    void reply_restored(Client& client);
    void evict_longest_lost();
    void keep_as_lost(Client& client, TimePoint now);
    void hold_until_durable(Connection& connection, const Client& client);

    const BrokerConfig& config_;
    Logger& logger_;
    BrokerStats& stats_;
    Effects& effects_;
    Routing& routing_;
    QueueAccounting& accounting_;
    std::unordered_map<std::string_view, std::unique_ptr<Client>> clients_;  // keys view names
    std::list<LostRecord> lost_;  // in order of loss, so deadlines ascend
    std::uint64_t last_loss_id_ = 0;
    std::uint64_t last_client_id_ = 0;
    Persistence* persistence_ = nullptr;
    ClusterLink* cluster_ = nullptr;
    std::optional<TimePoint> expiry_promised_;  // the expiry the server has armed, if any
};

}  // namespace pubsubx
