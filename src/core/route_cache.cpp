#include "pubsubx/core/route_cache.hpp"

namespace pubsubx {

const Route& RouteCache::store(std::string_view topic, Route route) {
    if (topic.size() > kMaxTopicBytes || route.filters.size() > kMaxFilters) {
        oversized_ = std::move(route);
        return oversized_;
    }
    if (routes_.size() >= kMaxTopics || filters_ + route.filters.size() > kMaxFilters) {
        forget_all();
    }
    forget(topic);  // a route stored again replaces the old one in the count too
    filters_ += route.filters.size();
    return routes_.emplace(std::string{topic}, std::move(route)).first->second;
}

void RouteCache::forget(std::string_view topic) {
    if (const auto found = routes_.find(topic); found != routes_.end()) {
        filters_ -= found->second.filters.size();
        last_found_ = nullptr;
        routes_.erase(found);
    }
}

void RouteCache::forget_all() {
    if (!routes_.empty()) {  // clearing walks every bucket, even of an empty map
        routes_.clear();
        filters_ = 0;
        last_found_ = nullptr;
    }
}

}  // namespace pubsubx
