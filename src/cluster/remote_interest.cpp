#include "remote_interest.hpp"

#include "pubsubx/protocol.hpp"
#include "subjects.hpp"

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
        record.set_name(found->first);
        record.is_filter = topic_shape(record.name()).wildcard;
        if (record.is_filter) {
            filters_.insert(record.name(), record);
        } else {
            found->second.subject = topic_subject(prefix_, record.name());
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
        filters_.erase(found->second.record.name());
    }
    entries_.erase(found);
}

const std::string* RemoteInterest::wanted(std::string_view topic) {
    if (entries_.empty()) {
        return nullptr;
    }
    const auto exact = entries_.find(topic);
    if (exact != entries_.end()) {
        return &exact->second.subject;
    }
    if (filters_.empty()) {
        return nullptr;
    }
    matched_.clear();
    filters_.match(topic, matched_);
    return matched_.empty() ? nullptr : &filter_only_;
}

}  // namespace pubsubx::cluster
