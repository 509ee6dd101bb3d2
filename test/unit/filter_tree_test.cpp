// The wildcard filter tree against MQTT's own examples (MQTT 3.1.1, section 4.7) and against a
// brute-force matcher on random filters and topics.
#include "pubsubx/core/filter_tree.hpp"

#include <doctest/doctest.h>

#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "pubsubx/core/routing.hpp"
#include "pubsubx/protocol.hpp"

using namespace pubsubx;

namespace {

std::vector<std::string_view> levels_of(std::string_view topic) {
    std::vector<std::string_view> levels;
    for (std::size_t start = 0;;) {
        const std::size_t end = topic.find('/', start);
        levels.push_back(topic.substr(start, end == std::string_view::npos ? end : end - start));
        if (end == std::string_view::npos) {
            return levels;
        }
        start = end + 1;
    }
}

// MQTT's rule written as plainly as possible, level by level: the reference for the tree.
bool brute_force_matches(std::string_view filter, std::string_view topic) {
    const auto wanted = levels_of(filter);
    const auto given = levels_of(topic);
    if (topic.starts_with('$') && (wanted[0] == "+" || wanted[0] == "#")) {
        return false;
    }
    for (std::size_t i = 0; i < wanted.size(); ++i) {
        if (wanted[i] == "#") {
            return true;  // this level and below, or none: `a/#` matches `a`
        }
        if (i >= given.size() || (wanted[i] != "+" && wanted[i] != given[i])) {
            return false;
        }
    }
    return wanted.size() == given.size();
}

// A tree with the records of its filters, which the tree only points at.
class Filters {
  public:
    void add(const std::string& filter) {
        Topic& topic = records_[filter];
        topic.set_name(records_.find(filter)->first);
        tree_.insert(topic.name(), topic);
    }
    void remove(const std::string& filter) {
        tree_.erase(filter);
        records_.erase(filter);
    }
    std::set<std::string> matching(std::string_view topic) {
        std::vector<const Topic*> found;
        tree_.match(topic, found);
        std::set<std::string> names;
        for (const Topic* record : found) {
            CHECK_MESSAGE(names.insert(std::string{record->name()}).second,
                          "matched twice: " << record->name());
        }
        return names;
    }
    FilterTree& tree() { return tree_; }

  private:
    std::map<std::string, Topic> records_;
    FilterTree tree_;
};

}  // namespace

TEST_CASE("topic shape: levels, wildcards, and `+` or `#` inside a level stay literal") {
    CHECK(topic_shape("a").levels == 1);
    CHECK(topic_shape("a//b").levels == 3);
    CHECK(topic_shape("/finance").levels == 2);
    CHECK(topic_shape("a/").levels == 2);
    CHECK(topic_shape("s/+/temp").wildcard);
    CHECK(topic_shape("#").wildcard);
    CHECK(topic_shape("a/#").wildcard);
    CHECK_FALSE(topic_shape("a+b").wildcard);
    CHECK_FALSE(topic_shape("x#").wildcard);
    CHECK_FALSE(topic_shape("a/+b/#c").wildcard);
    CHECK(topic_shape("a/#/b").hash_not_last);
    CHECK(topic_shape("#/").hash_not_last);
    CHECK_FALSE(topic_shape("a/#").hash_not_last);
    CHECK_FALSE(topic_shape("+/+").hash_not_last);
    for (const char* topic : {"a", "a//b", "a+b", "x#", "+a/b#", "a/b+/c", "#x", ""}) {
        CAPTURE(topic);
        CHECK_FALSE(has_wildcard_level(topic));
    }
    for (const char* topic : {"+", "#", "a/+", "+/a", "a/#", "a/+/b", "/+/", "a/#/b"}) {
        CAPTURE(topic);
        CHECK(has_wildcard_level(topic));
        CHECK(topic_shape(topic).wildcard);
    }
    CHECK(is_system_topic("$SYS"));
    CHECK(is_system_topic("$SYS/broker/uptime"));
    CHECK_FALSE(is_system_topic("$SYSTEM/x"));
    CHECK_FALSE(is_system_topic("a/$SYS"));
}

TEST_CASE("MQTT's examples of matching") {
    struct Case {
        const char* filter;
        const char* topic;
        bool matches;
    };
    const Case cases[] = {
        {"sport/tennis/player1/#", "sport/tennis/player1", true},
        {"sport/tennis/player1/#", "sport/tennis/player1/ranking", true},
        {"sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true},
        {"sport/tennis/player1/#", "sport/tennis/player2", false},
        {"sport/#", "sport", true},
        {"#", "sport/tennis", true},
        {"#", "/", true},
        {"sport/tennis/+", "sport/tennis/player1", true},
        {"sport/tennis/+", "sport/tennis/player1/ranking", false},
        {"sport/+", "sport", false},
        {"sport/+", "sport/", true},
        {"+/+", "/finance", true},
        {"/+", "/finance", true},
        {"+", "/finance", false},
        {"+", "finance", true},
        {"+/tennis/#", "sport/tennis", true},
        {"a/+/b", "a//b", true},
        {"a/#", "a//b", true},
        {"+/+/+", "a//b", true},
        {"a/+", "a/$x", true},  // the `$` rule is about the first level only
        {"#", "$SYS/broker/uptime", false},
        {"+/broker/uptime", "$SYS/broker/uptime", false},
        {"$SYS/#", "$SYS/broker/uptime", true},
        {"$SYS/+/uptime", "$SYS/broker/uptime", true},
        {"+/#", "$x", false},
    };
    for (const Case& c : cases) {
        CAPTURE(c.filter);
        CAPTURE(c.topic);
        CHECK(brute_force_matches(c.filter, c.topic) == c.matches);
        Filters filters;
        filters.add(c.filter);
        CHECK(filters.matching(c.topic).size() == (c.matches ? 1 : 0));
    }
}

TEST_CASE("every matching filter is found once, among many") {
    Filters filters;
    for (const char* filter : {"a/#", "a/+", "+/b", "#", "a/b/#", "+/+/c", "a/+/+", "b/+"}) {
        filters.add(filter);
    }
    CHECK(filters.matching("a/b") == std::set<std::string>{"a/#", "a/+", "+/b", "#", "a/b/#"});
    CHECK(filters.matching("a/b/c") ==
          std::set<std::string>{"a/#", "#", "a/b/#", "+/+/c", "a/+/+"});
    CHECK(filters.matching("a") == std::set<std::string>{"a/#", "#"});
    CHECK(filters.matching("z") == std::set<std::string>{"#"});
    CHECK(filters.matching("$z/b").empty());
}

TEST_CASE("erasing filters prunes the tree and leaves the others matching") {
    Filters filters;
    filters.add("a/+/c");
    filters.add("a/+/#");
    filters.add("a/b/c");
    filters.remove("a/+/c");
    CHECK(filters.tree().check_consistency().empty());
    CHECK(filters.matching("a/x/c") == std::set<std::string>{"a/+/#"});
    filters.remove("a/+/#");
    filters.remove("a/b/c");
    filters.remove("never/added/+");
    CHECK(filters.tree().empty());
    CHECK(filters.tree().check_consistency().empty());
    CHECK(filters.matching("a/b/c").empty());
}

TEST_CASE("the tree agrees with the brute-force matcher on random filters and topics") {
    std::mt19937 random{20261126};
    const std::vector<std::string> topic_levels{"a", "b", "", "$x", "a+b"};
    const auto pick = [&](std::size_t n) {
        return std::uniform_int_distribution<std::size_t>{0, n - 1}(random);
    };
    const auto random_topic = [&](bool filter) {
        std::string text;
        const std::size_t levels = 1 + pick(4);
        for (std::size_t i = 0; i < levels; ++i) {
            text += i > 0 ? "/" : "";
            const std::size_t choice = pick(topic_levels.size() + (filter ? 2 : 0));
            if (choice < topic_levels.size()) {
                text += topic_levels[choice];
            } else if (choice == topic_levels.size() || i + 1 < levels) {
                text += "+";
            } else {
                text += "#";
            }
        }
        return text;
    };
    for (int round = 0; round < 20; ++round) {
        Filters filters;
        std::set<std::string> added;
        for (int i = 0; i < 60; ++i) {
            const std::string filter = random_topic(true);
            if (topic_shape(filter).wildcard && added.insert(filter).second) {
                filters.add(filter);
            }
        }
        // Half of them go again, so matching runs over a pruned tree too.
        for (auto it = added.begin(); it != added.end();) {
            if (pick(2) == 0) {
                filters.remove(*it);
                it = added.erase(it);
            } else {
                ++it;
            }
        }
        REQUIRE(filters.tree().check_consistency().empty());
        REQUIRE(filters.tree().filter_count() == added.size());
        for (int i = 0; i < 200; ++i) {
            const std::string topic = random_topic(false);
            std::set<std::string> expected;
            for (const std::string& filter : added) {
                if (brute_force_matches(filter, topic)) {
                    expected.insert(filter);
                }
            }
            CAPTURE(topic);
            CHECK(filters.matching(topic) == expected);
        }
    }
}

TEST_CASE("cached routes follow the filters and exact topics that come and go, and are bounded") {
    Routing routing;
    Client a{"a", 1}, b{"b", 2};
    routing.subscribe(a, "a/+");
    const auto route_of = [&](std::string_view topic) -> const Route& {
        return routing.route_and_cache(topic, routing.find(topic));
    };
    CHECK(routing.cached_route("a/b") == nullptr);
    CHECK(route_of("a/b").filters.size() == 1);
    REQUIRE(routing.cached_route("a/b") != nullptr);
    CHECK(routing.cached_route("a/b")->exact == nullptr);
    routing.subscribe(b, "a/b");  // an exact topic: its own route changes
    CHECK(routing.cached_route("a/b") == nullptr);
    CHECK(route_of("a/b").exact == routing.find("a/b"));
    route_of("c/d");
    routing.subscribe(b, "x/y");  // another exact topic: other routes stay
    CHECK(routing.cached_route("a/b") != nullptr);
    CHECK(routing.cached_route("c/d") != nullptr);
    routing.subscribe(b, "+/b");  // a filter: any route may change
    CHECK(routing.cached_route("a/b") == nullptr);
    CHECK(routing.cached_route("c/d") == nullptr);
    CHECK(route_of("a/b").filters.size() == 2);
    routing.unsubscribe(b, "a/b");
    CHECK(routing.cached_route("a/b") == nullptr);
    CHECK(route_of("a/b").exact == nullptr);
    routing.unsubscribe(a, "a/+");
    CHECK(routing.cached_route("a/b") == nullptr);
    CHECK(route_of("a/b").filters.size() == 1);
    for (std::size_t i = 0; i < RouteCache::kMaxTopics + 10; ++i) {
        route_of("x/" + std::to_string(i) + "/b");
        CHECK(routing.cached_route_count() <= RouteCache::kMaxTopics);
    }
    CHECK(routing.cached_route("x/1/b") == nullptr);  // emptied once full, then filled again
    CHECK(routing.cached_route("x/4100/b") != nullptr);
    const std::string long_topic = std::string(RouteCache::kMaxTopicBytes, 'a') + "/b";
    CHECK(route_of(long_topic).filters.size() == 1);  // matched, but not kept
    CHECK(routing.cached_route(long_topic) == nullptr);
    CHECK(routing.check_consistency() == "");
    routing.unsubscribe_all(a);
    routing.unsubscribe_all(b);
    CHECK(routing.cached_route_count() == 0);
}
