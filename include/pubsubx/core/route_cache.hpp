// The routes of recently published topics, as NATS's sublist keeps a cache of its matches:
// while wildcard filters exist, a topic published again costs one lookup instead of a lookup
// and a walk of the filter tree. Routing keeps it right: a filter that comes or goes empties
// it, an exact topic that comes or goes drops its own entry.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <unordered_map>

#include "pubsubx/core/client.hpp"
#include "pubsubx/core/filter_tree.hpp"

namespace pubsubx {

// Where a PUBLISH topic goes: the record of its exact subscribers and every matching filter.
struct Route {
    const Topic* exact = nullptr;
    FilterTree::Matches filters;
};

class RouteCache {
  public:
    // Bounds on its memory; when one is reached the cache is emptied and fills again.
    static constexpr std::size_t kMaxTopics = 4096;
    static constexpr std::size_t kMaxFilters = 65'536;  // in all routes together
    // Longer topics are not stored, so that the keys take at most 1 MiB together.
    static constexpr std::size_t kMaxTopicBytes = 256;

    // Only topics a client may publish to are stored, so a route found also vouches for its
    // topic. Null when not stored. The last route found is compared first, as in
    // Routing::find_published.
    const Route* find(std::string_view topic) {
        if (last_found_ != nullptr && last_found_->first == topic) {
            return &last_found_->second;
        }
        const auto found = routes_.find(topic);
        if (found == routes_.end()) {
            return nullptr;
        }
        last_found_ = &*found;
        return &found->second;
    }
    // Stores the route (unless it alone is over the bounds) and returns it; valid until the
    // next change of the cache.
    const Route& store(std::string_view topic, Route route);
    void forget(std::string_view topic);
    void forget_all();
    std::size_t size() const { return routes_.size(); }

  private:
    using Routes = std::unordered_map<std::string, Route, StringHash, std::equal_to<>>;
    Routes routes_;
    const Routes::value_type* last_found_ = nullptr;  // cleared when any route goes
    std::size_t filters_ = 0;                         // in all routes together
    Route oversized_;                                 // a route too large to be stored
};

}  // namespace pubsubx
