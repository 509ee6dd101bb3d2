// Lifecycle: the clients by name and their states. Every change of state goes through one
// function per edge, which does all of its accounting (counts, bytes, the lost list, the log
// line, the effects the server owes):
//
//   (pending connection) --admit--> connected --lose--> lost --restore--> connected
//   connected --take_over--> connected (a new connection with the client's secret)
//   connected | lost --remove--> removed (DISCONNECT, expiry, eviction)
#pragma once

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
#include "pubsubx/core/config.hpp"
#include "pubsubx/core/effects.hpp"
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
    void restore(Connection& connection, Client& client, TimePoint now);
    void take_over(Connection& connection, Client& client, TimePoint now);
    void lose(Client& client, TimePoint now, std::string_view why);
    void remove(Client& client, std::string_view why);

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

    const BrokerConfig& config_;
    Logger& logger_;
    BrokerStats& stats_;
    Effects& effects_;
    Routing& routing_;
    QueueAccounting& accounting_;
    std::unordered_map<std::string_view, std::unique_ptr<Client>> clients_;  // keys view names
    std::list<LostRecord> lost_;  // in order of loss, so deadlines ascend
    std::uint64_t last_loss_id_ = 0;
    std::optional<TimePoint> expiry_promised_;  // the expiry the server has armed, if any
};

}  // namespace pubsubx
