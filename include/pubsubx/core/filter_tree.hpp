// The wildcard filters (`+`, trailing `#`) in a tree of topic levels, in the manner of
// Mosquitto's subscription tree and NATS's sublist: matching a topic walks its levels, so the
// cost grows with the number of levels, not with the number of filters. Exact topics are not
// here: Routing keeps them in a hash map and asks the tree only while it holds a filter.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "pubsubx/core/client.hpp"

namespace pubsubx {

class FilterTree {
  public:
    // The deepest filter the tree takes, whatever --max-topic-levels says: matching, pruning
    // and destruction recurse once per level.
    static constexpr std::size_t kMaxLevels = 1024;

    FilterTree();
    ~FilterTree();
    FilterTree(const FilterTree&) = delete;
    FilterTree& operator=(const FilterTree&) = delete;

    // `filter` has a wildcard level and passes topic_shape (protocol.hpp); `topic` is the
    // record of its subscribers, and must outlive its place here (erase it first).
    void insert(std::string_view filter, Topic& topic);
    void erase(std::string_view filter);
    // The record stored for `filter`, or null.
    const Topic* find(std::string_view filter) const;

    using Matches = std::vector<const Topic*>;

    // Appends the record of every filter that matches `topic` (a PUBLISH topic: no wildcard
    // levels), each once. Not const: it reuses its scratch space.
    void match(std::string_view topic, Matches& out);

    bool empty() const { return filter_count_ == 0; }
    std::size_t filter_count() const { return filter_count_; }
    // Every node leads to a filter, and the count agrees (for Broker::check_consistency).
    std::string check_consistency() const;

  private:
    struct Node;
    using Children =
        std::unordered_map<std::string, std::unique_ptr<Node>, StringHash, std::equal_to<>>;
    struct Node {
        Children literal;                 // the next level, written out
        std::unique_ptr<Node> any_level;  // the next level is `+`
        Topic* ends_here = nullptr;       // the filter whose last level is this node
        Topic* and_below = nullptr;       // the filter "<this node>/#" (`#` is always last)

        bool unused() const {
            return literal.empty() && !any_level && ends_here == nullptr && and_below == nullptr;
        }
    };

    static Node* child(Node& node, std::string_view level, bool create);
    // Where the record of `filter` is kept: the node that holds it and the field; both null
    // when not `create` and its path is missing. `path` gets the nodes passed on the way down,
    // each with the level that leads out of it (erase prunes along it).
    struct Place {
        Node* node = nullptr;
        Topic** slot = nullptr;
    };
    using Path = std::vector<std::pair<Node*, std::string_view>>;
    Place place_of(std::string_view filter, bool create, Path* path = nullptr);
    static std::string check_node(const Node& node, std::size_t& filters);

    void collect(const Node& node, std::size_t depth, std::vector<const Topic*>& out);

    Node root_;
    std::size_t filter_count_ = 0;
    std::vector<std::string_view> levels_;  // match's scratch: the topic's levels
    bool system_topic_ = false;
};

}  // namespace pubsubx
