#include "pubsubx/core/routing.hpp"

#include <algorithm>

#include "pubsubx/protocol.hpp"

namespace pubsubx {

Topic* Routing::find(std::string_view name) {
    const auto found = topics_.find(name);
    return found == topics_.end() ? nullptr : &found->second;
}

const Topic* Routing::find(std::string_view name) const {
    const auto found = topics_.find(name);
    return found == topics_.end() ? nullptr : &found->second;
}

bool Routing::is_subscribed(const Client& client, std::string_view name) const {
    const Topic* const topic = find(name);
    if (topic == nullptr) {
        return false;
    }
    // Whichever list is shorter: a client with many topics, or a topic with many subscribers.
    if (client.subscriptions_.size() <= topic->subscribers.size()) {
        return std::any_of(client.subscriptions_.begin(), client.subscriptions_.end(),
                           [&](const Subscription& s) { return s.topic == topic; });
    }
    return std::any_of(topic->subscribers.begin(), topic->subscribers.end(),
                       [&](const Subscriber& s) { return s.client == &client; });
}

bool Routing::subscribe(Client& client, std::string_view name) {
    if (is_subscribed(client, name)) {
        return false;
    }
    auto found = topics_.find(name);
    if (found == topics_.end()) {
        found = topics_.emplace(std::string{name}, Topic{}).first;
        Topic& created = found->second;
        created.set_name(found->first);
        created.is_filter = topic_shape(name).wildcard;
        created.open_to_publish = publish_ban(name) == PublishBan::none;
        if (created.is_filter) {
            filters_.insert(created.name(), created);
            routes_.forget_all();  // any cached route may match it
        } else {
            routes_.forget(created.name());
        }
        if (cluster_ != nullptr) {
            cluster_->interest_added(created.name());
        }
    }
    Topic& topic = found->second;
    client.subscriptions_.push_back({&topic, static_cast<std::uint32_t>(topic.subscribers.size())});
    topic.subscribers.push_back(
        {&client, static_cast<std::uint32_t>(client.subscriptions_.size() - 1)});
    ++subscription_count_;
    return true;
}

bool Routing::unsubscribe(Client& client, std::string_view name) {
    const Topic* const topic = find(name);
    if (topic == nullptr) {
        return false;
    }
    auto& subscriptions = client.subscriptions_;
    const auto found = std::find_if(subscriptions.begin(), subscriptions.end(),
                                    [&](const Subscription& s) { return s.topic == topic; });
    if (found == subscriptions.end()) {
        return false;
    }
    leave(client, static_cast<std::size_t>(found - subscriptions.begin()));
    return true;
}

// Removes subscription `index` of `client`. The client's list keeps its order (RESTORED lists
// it), so the subscriptions after it move down and their subscribers' back links follow.
void Routing::leave(Client& client, std::size_t index) {
    auto& subscriptions = client.subscriptions_;
    Topic& topic = *subscriptions[index].topic;
    const std::uint32_t slot = subscriptions[index].slot;
    // O(1) among the topic's subscribers: the last one takes the leaving one's slot.
    Subscriber& last = topic.subscribers.back();
    last.client->subscriptions_[last.subscription].slot = slot;
    topic.subscribers[slot] = last;
    topic.subscribers.pop_back();
    --subscription_count_;
    subscriptions.erase(subscriptions.begin() + static_cast<std::ptrdiff_t>(index));
    for (std::size_t i = index; i < subscriptions.size(); ++i) {
        subscriptions[i].topic->subscribers[subscriptions[i].slot].subscription =
            static_cast<std::uint32_t>(i);
    }
    if (topic.subscribers.empty()) {
        if (topic.is_filter) {
            filters_.erase(topic.name());
            routes_.forget_all();
        } else {
            routes_.forget(topic.name());
        }
        if (cluster_ != nullptr) {
            cluster_->interest_removed(topic.name());
        }
        if (last_published_ == &topic) {
            last_published_ = nullptr;
        }
        topics_.erase(topics_.find(topic.name()));
    }
}

const Route& Routing::route_and_cache(std::string_view topic, const Topic* exact) {
    Route route{exact, {}};
    filters_.match(topic, route.filters);
    return routes_.store(topic, std::move(route));
}

void Routing::unsubscribe_all(Client& client) {
    // From the back: nothing moves in the client's list, so each leave is O(1).
    while (!client.subscriptions_.empty()) {
        leave(client, client.subscriptions_.size() - 1);
    }
}

std::string Routing::check_consistency() const {
    if (std::string broken = filters_.check_consistency(); !broken.empty()) {
        return broken;
    }
    std::size_t filters = 0;
    std::size_t subscribers = 0;
    for (const auto& [name, topic] : topics_) {
        subscribers += topic.subscribers.size();
        if (topic.subscribers.empty() || topic.name() != name) {
            return "topic '" + name + "' is empty or misnamed";
        }
        if (topic.is_filter != topic_shape(name).wildcard ||
            (topic.is_filter && filters_.find(name) != &topic)) {
            return "filter '" + name + "' is not where the filter tree has it";
        }
        filters += topic.is_filter ? 1 : 0;
        for (std::size_t slot = 0; slot < topic.subscribers.size(); ++slot) {
            const Subscriber& subscriber = topic.subscribers[slot];
            const auto& subscriptions = subscriber.client->subscriptions_;
            if (subscriber.subscription >= subscriptions.size() ||
                subscriptions[subscriber.subscription].topic != &topic ||
                subscriptions[subscriber.subscription].slot != slot) {
                return "subscriber " + std::to_string(slot) + " of '" + name +
                       "' and its subscription disagree";
            }
            if (subscriber.client->state() == ClientState::removed) {
                return "a removed client still subscribes to '" + name + "'";
            }
        }
    }
    if (filters != filters_.filter_count()) {
        return "the filter tree holds filters that no topic record has";
    }
    if (subscribers != subscription_count_) {
        return "the subscription count is " + std::to_string(subscription_count_) + ", not " +
               std::to_string(subscribers);
    }
    return {};
}

}  // namespace pubsubx
