#include "pubsubx/core/filter_tree.hpp"

namespace pubsubx {

namespace {
constexpr auto npos = std::string_view::npos;

// The level of `text` that starts at `start`, ending at the next '/' (`end`, or npos).
std::string_view level_at(std::string_view text, std::size_t start, std::size_t end) {
    return text.substr(start, end == npos ? npos : end - start);
}
}  // namespace

FilterTree::FilterTree() = default;
FilterTree::~FilterTree() = default;

void FilterTree::insert(std::string_view filter, Topic& topic) {
    Topic** const slot = place_of(filter, true).slot;
    if (*slot == nullptr) {
        ++filter_count_;
    }
    *slot = &topic;
}

const Topic* FilterTree::find(std::string_view filter) const {
    // place_of creates nothing when asked not to.
    Topic** const slot = const_cast<FilterTree*>(this)->place_of(filter, false).slot;
    return slot == nullptr ? nullptr : *slot;
}

FilterTree::Node* FilterTree::child(Node& node, std::string_view level, bool create) {
    if (level == "+") {
        if (!node.any_level && create) {
            node.any_level = std::make_unique<Node>();
        }
        return node.any_level.get();
    }
    if (const auto found = node.literal.find(level); found != node.literal.end()) {
        return found->second.get();
    }
    if (!create) {
        return nullptr;
    }
    return node.literal.emplace(std::string{level}, std::make_unique<Node>()).first->second.get();
}

FilterTree::Place FilterTree::place_of(std::string_view filter, bool create, Path* path) {
    Node* node = &root_;
    for (std::size_t start = 0;;) {
        const std::size_t end = filter.find('/', start);
        const std::string_view level = level_at(filter, start, end);
        if (level == "#" && end == npos) {
            return {node, &node->and_below};
        }
        Node* const next = child(*node, level, create);
        if (next == nullptr) {
            return {};
        }
        if (path != nullptr) {
            path->emplace_back(node, level);
        }
        node = next;
        if (end == npos) {
            return {node, &node->ends_here};
        }
        start = end + 1;
    }
}

void FilterTree::erase(std::string_view filter) {
    Path path;
    auto [node, slot] = place_of(filter, false, &path);
    if (slot == nullptr || *slot == nullptr) {
        return;
    }
    *slot = nullptr;
    --filter_count_;
    // Nodes that lead to no filter any more go, from the deepest up.
    while (!path.empty() && node->unused()) {
        const auto [parent, level] = path.back();
        path.pop_back();
        if (level == "+") {
            parent->any_level.reset();
        } else {
            parent->literal.erase(parent->literal.find(level));
        }
        node = parent;
    }
}

void FilterTree::match(std::string_view topic, std::vector<const Topic*>& out) {
    levels_.clear();
    for (std::size_t start = 0;;) {
        const std::size_t end = topic.find('/', start);
        levels_.push_back(level_at(topic, start, end));
        if (end == npos) {
            break;
        }
        start = end + 1;
    }
    // MQTT: a topic starting with '$' is not matched by a wildcard in the first level, so that
    // `#` does not receive the broker's `$SYS` traffic.
    system_topic_ = topic.starts_with('$');
    collect(root_, 0, out);
}

// `node` matches the first `depth` levels of the topic. Every node is reached by one path, so
// it is visited at most once and each filter is found once.
void FilterTree::collect(const Node& node, std::size_t depth, std::vector<const Topic*>& out) {
    const bool wildcards_apply = depth > 0 || !system_topic_;
    if (node.and_below != nullptr && wildcards_apply) {
        out.push_back(node.and_below);  // the levels below, or none: `a/#` matches `a`
    }
    if (depth == levels_.size()) {
        if (node.ends_here != nullptr) {
            out.push_back(node.ends_here);
        }
        return;
    }
    if (!node.literal.empty()) {
        if (const auto found = node.literal.find(levels_[depth]); found != node.literal.end()) {
            collect(*found->second, depth + 1, out);
        }
    }
    if (node.any_level && wildcards_apply) {
        collect(*node.any_level, depth + 1, out);
    }
}

std::string FilterTree::check_node(const Node& node, std::size_t& filters) {
    filters += (node.ends_here != nullptr ? 1 : 0) + (node.and_below != nullptr ? 1 : 0);
    const auto check_child = [&](const Node& next) -> std::string {
        if (next.unused()) {
            return "a node of the filter tree leads to no filter";
        }
        return check_node(next, filters);
    };
    for (const auto& [level, next] : node.literal) {
        if (std::string broken = check_child(*next); !broken.empty()) {
            return broken;
        }
    }
    return node.any_level ? check_child(*node.any_level) : std::string{};
}

std::string FilterTree::check_consistency() const {
    std::size_t filters = 0;
    std::string broken = check_node(root_, filters);
    if (broken.empty() && filters != filter_count_) {
        broken = "the filter tree holds " + std::to_string(filters) + " filters but counts " +
                 std::to_string(filter_count_);
    }
    return broken;
}

}  // namespace pubsubx
