#include "remote_interest.hpp"

#include "pubsubx/protocol.hpp"

namespace pubsubx::cluster {

void RemoteInterest::add(std::uint64_t node, std::string_view topic_or_filter) {
    auto& announced = by_node_[node];
    if (!announced.emplace(topic_or_filter).second) {
        return;
    }
    auto found = entries_.find(topic_or_filter);
    if (found == entries_.end()) {
        found = entries_.emplace(std::string{topic_or_filter}, Entry{}).first;
        Topic& record = found->second.record;
        record.name = found->first;
        record.is_filter = topic_shape(record.name).wildcard;
        if (record.is_filter) {
            filters_.insert(record.name, record);
        }
    }
    ++found->second.nodes;
}

void RemoteInterest::remove(std::uint64_t node, std::string_view topic_or_filter) {
    const auto node_entry = by_node_.find(node);
    if (node_entry == by_node_.end()) {
        return;
    }
    const auto announced = node_entry->second.find(std::string{topic_or_filter});
    if (announced == node_entry->second.end()) {
        return;
    }
    node_entry->second.erase(announced);
    release(topic_or_filter);
}

void RemoteInterest::forget(std::uint64_t node) {
    const auto node_entry = by_node_.find(node);
    if (node_entry == by_node_.end()) {
        return;
    }
    for (const std::string& topic_or_filter : node_entry->second) {
        release(topic_or_filter);
    }
    by_node_.erase(node_entry);
}

void RemoteInterest::release(std::string_view topic_or_filter) {
    const auto found = entries_.find(topic_or_filter);
    if (found == entries_.end() || --found->second.nodes > 0) {
        return;
    }
    if (found->second.record.is_filter) {
        filters_.erase(found->second.record.name);
    }
    entries_.erase(found);
}

bool RemoteInterest::wanted(std::string_view topic) {
    if (entries_.empty()) {
        return false;
    }
    if (entries_.find(topic) != entries_.end()) {
        return true;
    }
    if (filters_.empty()) {
        return false;
    }
    matched_.clear();
    filters_.match(topic, matched_);
    return !matched_.empty();
}

}  // namespace pubsubx::cluster
