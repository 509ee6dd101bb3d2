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
#include "pubsubx/core/cluster_link.hpp"
#include "pubsubx/core/filter_tree.hpp"
#include "pubsubx/core/route_cache.hpp"

namespace pubsubx {

class Routing {
  public:
    // Topics and filters live in the map's nodes: one allocation each, and clients point at
    // them. A PUBLISH topic has no wildcard level, so it can only find an exact topic here.
    using TopicMap = std::unordered_map<std::string, Topic, StringHash, std::equal_to<>>;

    Topic* find(std::string_view name);
    const Topic* find(std::string_view name) const;
    // find() for a PUBLISH: a publisher usually sends many messages to one topic, and
    // comparing the name with the last one found is cheaper than hashing it (issue 16: the
    // lookup was over a quarter of a 16-byte publish).
    const Topic* find_published(std::string_view name) {
        if (last_published_ != nullptr && last_published_->name() == name) {
            return last_published_;
        }
        const Topic* const found = find(name);
        if (found != nullptr) {
            last_published_ = found;
        }
        return found;
    }
    bool is_subscribed(const Client& client, std::string_view name) const;
    // Adds the subscription; false if the client has it already.
    bool subscribe(Client& client, std::string_view name);
    // Removes the subscription; false if the client did not have it.
    bool unsubscribe(Client& client, std::string_view name);
    void unsubscribe_all(Client& client);

    // Cluster mode: the link hears when a topic or filter gains its first subscriber and
    // loses its last.
    void attach_cluster(ClusterLink* cluster) { cluster_ = cluster; }

    bool has_filters() const { return !filters_.empty(); }
    // Appends the filters that match `topic`, a PUBLISH topic, each once (uncached).
    void match_filters(std::string_view topic, FilterTree::Matches& out) {
        filters_.match(topic, out);
    }
    // While filters exist, the route of a topic published before, or null: see RouteCache.
    const Route* cached_route(std::string_view topic) { return routes_.find(topic); }
    // The route of `topic`, a topic clients may publish to, found and cached; `exact` is
    // find(topic). Valid until the routing changes.
    const Route& route_and_cache(std::string_view topic, const Topic* exact);
    std::size_t cached_route_count() const { return routes_.size(); }

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
    RouteCache routes_;
    std::size_t subscription_count_ = 0;
    ClusterLink* cluster_ = nullptr;
    const Topic* last_published_ = nullptr;  // see find_published; cleared when it goes
};

}  // namespace pubsubx
