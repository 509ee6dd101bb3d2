// Routing: topics and their subscribers, linked both ways so that a client leaves a topic in
// O(1) whatever the number of subscribers. Knows nothing of queues, states or limits.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <unordered_map>

#include "pubsubx/core/client.hpp"

namespace pubsubx {

class Routing {
  public:
    // Topics live in the map's nodes: one allocation per topic, and clients point at them.
    using TopicMap = std::unordered_map<std::string, Topic, StringHash, std::equal_to<>>;

    Topic* find(std::string_view name);
    const Topic* find(std::string_view name) const;
    bool is_subscribed(const Client& client, std::string_view name) const;
    // Adds the subscription; false if the client has it already.
    bool subscribe(Client& client, std::string_view name);
    // Removes the subscription; false if the client did not have it.
    bool unsubscribe(Client& client, std::string_view name);
    void unsubscribe_all(Client& client);

    std::size_t topic_count() const { return topics_.size(); }
    const TopicMap& topics() const { return topics_; }
    // The links both ways agree (for Broker::check_consistency).
    std::string check_consistency() const;

  private:
    void leave(Client& client, std::size_t subscription_index);

    TopicMap topics_;
};

}  // namespace pubsubx
