// Routing: topics and wildcard filters with their subscribers, linked both ways so that a
// client leaves one in O(1) whatever the number of subscribers. Exact topics are found by
// hash; filters (`+`, `#`) are also in a tree of levels, consulted only while one exists.
// Knows nothing of queues, states or limits.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <unordered_map>

#include "pubsubx/core/client.hpp"
#include "pubsubx/core/filter_tree.hpp"

namespace pubsubx {

class Routing {
  public:
    // Topics and filters live in the map's nodes: one allocation each, and clients point at
    // them. A PUBLISH topic has no wildcard level, so it can only find an exact topic here.
    using TopicMap = std::unordered_map<std::string, Topic, StringHash, std::equal_to<>>;

    Topic* find(std::string_view name);
    const Topic* find(std::string_view name) const;
    bool is_subscribed(const Client& client, std::string_view name) const;
    // Adds the subscription; false if the client has it already.
    bool subscribe(Client& client, std::string_view name);
    // Removes the subscription; false if the client did not have it.
    bool unsubscribe(Client& client, std::string_view name);
    void unsubscribe_all(Client& client);

    // The filters that match `topic`, a PUBLISH topic (one entry per filter): see FilterTree.
    FilterTree& filters() { return filters_; }
    bool has_filters() const { return !filters_.empty(); }

    // Topics and filters that have subscribers.
    std::size_t topic_count() const { return topics_.size(); }
    std::size_t filter_count() const { return filters_.filter_count(); }
    std::size_t subscription_count() const { return subscription_count_; }
    const TopicMap& topics() const { return topics_; }
    // The links both ways agree (for Broker::check_consistency).
    std::string check_consistency() const;

  private:
    void leave(Client& client, std::size_t subscription_index);

    TopicMap topics_;
    FilterTree filters_;
    std::size_t subscription_count_ = 0;
};

}  // namespace pubsubx
