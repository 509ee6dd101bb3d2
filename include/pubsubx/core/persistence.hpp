// What the core tells a durable store (src/store/) about the state a restart or a crash would
// otherwise lose: client records, their subscriptions, and the messages queued for lost
// clients. The core calls it at the few places where that state changes; traffic between
// connected clients never reaches it. A store mirrors, per lost client, exactly the messages
// of its queue, oldest first, so that "drop the oldest N" means the same on both sides.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pubsubx/core/secret_digest.hpp"

namespace pubsubx {

class Client;

// A client as the store kept it, for Broker::recover at start.
struct RecoveredClient {
    std::uint64_t id = 0;
    std::string name;
    std::optional<SecretDigest> secret;
    std::vector<std::string> subscriptions;  // in subscription order
    std::string frames;  // its queued messages, oldest first, delimiters included
};

class Persistence {
  public:
    // A new client, or its secret changed (a client without one adopts the first it is given).
    virtual void client_saved(const Client& client) = 0;
    virtual void client_removed(const Client& client) = 0;
    virtual void subscribed(const Client& client, std::string_view topic) = 0;
    virtual void unsubscribed(const Client& client, std::string_view topic) = 0;
    // Encoded frames (delimiters included, one or more) joining the end of a lost client's
    // stored queue.
    virtual void messages_kept(const Client& client, std::string_view frames) = 0;
    virtual void oldest_dropped(const Client& client, std::size_t count) = 0;
    // The client was restored: its stored queue is being written to it, and kept no more.
    virtual void queue_handed_over(const Client& client) = 0;

  protected:
    ~Persistence() = default;
};

}  // namespace pubsubx
