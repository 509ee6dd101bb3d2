#include "pubsubx/broker.hpp"

#include <algorithm>
#include <cstdio>

#include "pubsubx/protocol.hpp"

namespace pubsubx {

namespace {

constexpr std::string_view kExpectedConnect{"ERROR: Expected CONNECT <name> as the first frame"};
constexpr std::string_view kInvalidName{
    "ERROR: Invalid name (1 to 64 bytes, no spaces or control characters)"};

std::string seconds_text(Clock::duration duration) {
    const double seconds = std::chrono::duration<double>(duration).count();
    char text[32];
    std::snprintf(text, sizeof text, "%g s", seconds);
    return text;
}

}  // namespace

Broker::Broker(BrokerConfig config, Logger& logger) : config_(config), logger_(logger) {}

Broker::~Broker() = default;

FrameResult Broker::handle_frame(Connection& connection, std::string_view frame, TimePoint now) {
    if (frame.empty()) {
        return {};  // the protocol says empty frames are ignored
    }
    const Command command = parse_command(frame);
    Client* const client = connection.client_;
    if (client == nullptr) {
        if (command.kind != CommandKind::connect || !command.has_argument) {
            logger_.error("Closing a connection whose first frame is not CONNECT <name>");
            return {FrameResult::Next::close, kExpectedConnect};
        }
        return connect(connection, command.argument, now);
    }
    switch (command.kind) {
        case CommandKind::publish:
            if (command.has_argument) {
                publish(*client, command.argument, command.data);
            }
            break;
        case CommandKind::subscribe:
            if (command.has_argument) {
                subscribe(*client, command.argument);
            }
            break;
        case CommandKind::unsubscribe:
            if (command.has_argument) {
                unsubscribe(*client, command.argument);
            }
            break;
        case CommandKind::disconnect:
            remove_client(*client, "disconnected");
            return {FrameResult::Next::close, {}};
        case CommandKind::connect:
        case CommandKind::unknown:
            // The original server ignores what it does not know, and a second CONNECT.
            logger_.verbose("Client '", client->name(), "' sent an ignored frame");
            break;
    }
    return {};
}

FrameResult Broker::connect(Connection& connection, std::string_view name, TimePoint now) {
    (void)now;
    if (!is_valid_name(name)) {
        logger_.error("Refused a CONNECT with an invalid name of ", name.size(), " bytes");
        return {FrameResult::Next::close, kInvalidName};
    }
    const auto found = clients_.find(name);
    if (found == clients_.end()) {
        auto client = std::make_unique<Client>(std::string{name}, config_.max_queue_bytes);
        Client& added = *client;
        clients_.emplace(added.name(), std::move(client));
        attach(connection, added);
        std::string reply;
        append_frame(reply, kConnAccepted);
        deliver(added, reply);
        logger_.info("Client '", added.name(), "' added");
        return {};
    }
    Client& existing = *found->second;
    if (existing.connected()) {
        logger_.error("Refused CONNECT '", name, "': the name is connected already");
        return {FrameResult::Next::close, kNameTaken};
    }
    restore(connection, existing);
    return {};
}

void Broker::restore(Connection& connection, Client& client) {
    ++client.loss_generation;  // its entry in the lost FIFO no longer expires it
    ++stats_.clients_restored;
    std::string reply;
    reply.append(kRestoredPrefix).append(client.name()).append(kDelimiter);
    for (std::size_t i = 0; i < client.topics_.size(); ++i) {
        if (i > 0) {
            reply.push_back(' ');
        }
        reply.append(client.topics_[i]->name);
    }
    reply.append(kDelimiter);
    const std::size_t queued = client.outbound_.frame_count();
    client.outbound_.push_front_unbounded(reply);
    attach(connection, client);
    connection.outbound_ready();
    logger_.info("Client '", client.name(), "' restored with ", client.topics_.size(),
                 " subscription(s) and ", queued, " queued message(s)");
}

void Broker::attach(Connection& connection, Client& client) {
    connection.client_ = &client;
    client.connection_ = &connection;
}

void Broker::subscribe(Client& client, std::string_view topic_name) {
    auto found = topics_.find(topic_name);
    if (found == topics_.end()) {
        found = topics_.emplace(std::string{topic_name}, Topic{}).first;
        found->second.name = found->first;
    }
    Topic* const topic = &found->second;
    if (std::find(client.topics_.begin(), client.topics_.end(), topic) != client.topics_.end()) {
        logger_.verbose("Client '", client.name(), "' is already subscribed to '", topic_name, "'");
        return;
    }
    client.topics_.push_back(topic);
    topic->subscribers.push_back(&client);
    logger_.info("Client '", client.name(), "' subscribed to '", topic_name, "'");
}

void Broker::unsubscribe(Client& client, std::string_view topic_name) {
    const auto found = topics_.find(topic_name);
    Topic* const topic = found == topics_.end() ? nullptr : &found->second;
    const auto in_client = std::find(client.topics_.begin(), client.topics_.end(), topic);
    if (topic == nullptr || in_client == client.topics_.end()) {
        logger_.verbose("Client '", client.name(), "' was not subscribed to '", topic_name, "'");
        return;
    }
    client.topics_.erase(in_client);
    auto& subscribers = topic->subscribers;
    subscribers.erase(std::find(subscribers.begin(), subscribers.end(), &client));
    logger_.info("Client '", client.name(), "' unsubscribed from '", topic_name, "'");
    if (subscribers.empty()) {
        topics_.erase(found);
    }
}

void Broker::publish(Client& from, std::string_view topic_name, std::string_view data) {
    ++stats_.published;
    if (logger_.verbose_enabled()) {
        logger_.verbose("Client '", from.name(), "' published to '", topic_name, "': ", data);
    }
    const auto found = topics_.find(topic_name);
    if (found == topics_.end()) {
        return;
    }
    encoded_.clear();
    append_message_frame(encoded_, topic_name, data);
    for (Client* subscriber : found->second.subscribers) {
        deliver(*subscriber, encoded_);
    }
    stats_.delivered += found->second.subscribers.size();
}

void Broker::deliver(Client& client, std::string_view encoded_frame) {
    const bool was_empty = client.outbound_.empty();
    if (const std::size_t dropped = client.outbound_.push(encoded_frame); dropped > 0) {
        stats_.dropped += dropped;
        if (client.dropped_in_episode == 0) {
            logger_.error("Queue of client '", client.name(), "' is full (",
                          config_.max_queue_bytes, " bytes): dropping its oldest messages");
        }
        client.dropped_in_episode += dropped;
    }
    if (was_empty && client.connection_ != nullptr && !client.outbound_.empty()) {
        client.connection_->outbound_ready();
    }
}

void Broker::take_outbound(Connection& connection, std::string& out) {
    Client* const client = connection.client_;
    if (client == nullptr) {
        out.clear();
        return;
    }
    client->outbound_.take_all(out);
    if (client->dropped_in_episode > 0) {
        logger_.info("Client '", client->name(), "' caught up; ", client->dropped_in_episode,
                     " message(s) were dropped while its queue was full");
        client->dropped_in_episode = 0;
    }
}

void Broker::connection_closed(Connection& connection, TimePoint now) {
    Client* const client = connection.client_;
    if (client == nullptr) {
        return;
    }
    connection.client_ = nullptr;
    client->connection_ = nullptr;
    ++stats_.clients_lost;
    if (config_.lost_timeout <= Clock::duration::zero()) {
        remove_client(*client, "lost, and the retention period is 0");
        return;
    }
    ++client->loss_generation;
    lost_fifo_.push_back({client->name(), now + config_.lost_timeout, client->loss_generation});
    client->outbound_.release_memory_if_empty();
    logger_.info("Client '", client->name(), "' lost; keeping its ", client->topics_.size(),
                 " subscription(s) and messages for ", seconds_text(config_.lost_timeout));
}

void Broker::expire_lost_clients(TimePoint now) {
    while (!lost_fifo_.empty() && lost_fifo_.front().deadline <= now) {
        const LostEntry entry = std::move(lost_fifo_.front());
        lost_fifo_.pop_front();
        const auto found = clients_.find(entry.name);
        if (found == clients_.end()) {
            continue;
        }
        Client& client = *found->second;
        if (client.connected() || client.loss_generation != entry.generation) {
            continue;  // restored (and perhaps lost again) since this entry was made
        }
        ++stats_.clients_expired;
        const std::size_t queued = client.outbound_.frame_count();
        remove_client(client, "retention period of " + seconds_text(config_.lost_timeout) +
                                  " ended, " + std::to_string(queued) +
                                  " queued message(s) discarded");
    }
}

std::optional<TimePoint> Broker::next_expiry() const {
    if (lost_fifo_.empty()) {
        return std::nullopt;
    }
    return lost_fifo_.front().deadline;
}

void Broker::remove_client(Client& client, std::string_view reason) {
    for (Topic* topic : client.topics_) {
        auto& subscribers = topic->subscribers;
        subscribers.erase(std::find(subscribers.begin(), subscribers.end(), &client));
        if (subscribers.empty()) {
            topics_.erase(topics_.find(topic->name));
        }
    }
    if (client.connection_ != nullptr) {
        client.connection_->client_ = nullptr;
    }
    logger_.info("Client '", client.name(), "' removed (", reason, ")");
    clients_.erase(std::string_view{client.name()});
}

const Client* Broker::find_client(std::string_view name) const {
    const auto found = clients_.find(name);
    return found == clients_.end() ? nullptr : found->second.get();
}

const Topic* Broker::find_topic(std::string_view name) const {
    const auto found = topics_.find(name);
    return found == topics_.end() ? nullptr : &found->second;
}

}  // namespace pubsubx
