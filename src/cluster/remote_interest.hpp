// What the other nodes of the cluster subscribe to, as they announce it (cluster_node.hpp):
// per node its topics and filters, and together a count per topic or filter. A local publish
// goes to NATS only if some other node wants it, so traffic among one node's own clients
// costs the cluster nothing.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "pubsubx/core/client.hpp"
#include "pubsubx/core/filter_tree.hpp"

namespace pubsubx::cluster {

class RemoteInterest {
  public:
    // `prefix`: the cluster's subject prefix (subjects.hpp), for the subjects of exact topics.
    explicit RemoteInterest(std::string prefix) : prefix_(std::move(prefix)) {}
    RemoteInterest(const RemoteInterest&) = delete;
    RemoteInterest& operator=(const RemoteInterest&) = delete;

    void add(std::uint64_t node, std::string_view topic_or_filter);
    void remove(std::uint64_t node, std::string_view topic_or_filter);
    // Everything `node` announced is forgotten (it restarted, left, or its lease ended).
    void forget(std::uint64_t node);
    bool knows(std::uint64_t node) const { return by_node_.count(node) != 0; }
    // Whether some other node subscribes to a topic or filter matching `topic` (a PUBLISH
    // topic): null if none does, else the topic's subject when an exact subscription is known
    // (one lookup serves both), or an empty string when only a filter matches.
    const std::string* wanted(std::string_view topic);
    std::size_t node_count() const { return by_node_.size(); }
    std::size_t entry_count() const { return entries_.size(); }

  private:
    struct Entry {
        Topic record;  // for the filter tree; its subscribers stay empty
        std::size_t nodes = 0;
        std::string subject;  // an exact topic's
    };
    void release(std::string_view topic_or_filter);

    std::string prefix_;
    std::string filter_only_;  // the empty answer of wanted()
    std::unordered_map<std::uint64_t, std::unordered_set<std::string>> by_node_;
    std::unordered_map<std::string, Entry, StringHash, std::equal_to<>> entries_;
    FilterTree filters_;
    FilterTree::Matches matched_;
};

}  // namespace pubsubx::cluster
