#include "pubsubx/broker.hpp"

#include <algorithm>
#include <cstdio>
#include <limits>

#include "pubsubx/protocol.hpp"

namespace pubsubx {

namespace {

constexpr std::string_view kExpectedConnect{"ERROR: Expected CONNECT <name> as the first frame"};
constexpr std::string_view kInvalidName{
    "ERROR: Invalid name (1 to 64 bytes, no spaces or control characters)"};
constexpr std::string_view kInvalidSecret{
    "ERROR: Invalid secret (1 to 128 bytes, no spaces or control characters)"};
constexpr std::string_view kSecretRequired{
    "ERROR: Not authorized: this server requires CONNECT <name> <secret>"};

// A wrong secret is answered after 100 ms, doubling with each further failure up to 5 s.
constexpr auto kFirstRefusalDelay = std::chrono::milliseconds{100};
constexpr auto kLongestRefusalDelay = std::chrono::seconds{5};

// Compares every byte of `offered` whatever the contents, so the time taken does not tell an
// attacker how much of a guess was right.
bool secrets_match(std::string_view expected, std::string_view offered) {
    if (expected.empty()) {
        return false;
    }
    unsigned difference = expected.size() == offered.size() ? 0U : 1U;
    for (std::size_t i = 0; i < offered.size(); ++i) {
        difference |= static_cast<unsigned char>(offered[i]) ^
                      static_cast<unsigned char>(expected[i % expected.size()]);
    }
    return difference == 0;
}

Clock::duration refusal_delay(std::uint32_t failed_attempts) {
    const std::uint32_t doublings = std::min<std::uint32_t>(failed_attempts - 1, 6);
    return std::min<Clock::duration>(kFirstRefusalDelay * (1U << doublings), kLongestRefusalDelay);
}

bool over_limit(std::size_t value, std::size_t limit) {
    return limit != 0 && value > limit;
}

}  // namespace

std::string seconds_text(Clock::duration duration) {
    const double seconds = std::chrono::duration<double>(duration).count();
    char text[32];
    std::snprintf(text, sizeof text, "%g s", seconds);
    return text;
}

std::string describe(const BrokerStats& stats) {
    return "published=" + std::to_string(stats.published) +
           " delivered=" + std::to_string(stats.delivered) +
           " dropped=" + std::to_string(stats.dropped) +
           " dropped_global_cap=" + std::to_string(stats.dropped_global_cap) +
           " lost=" + std::to_string(stats.clients_lost) +
           " restored=" + std::to_string(stats.clients_restored) +
           " expired=" + std::to_string(stats.clients_expired) +
           " lost_evicted=" + std::to_string(stats.lost_clients_evicted) +
           " slow_consumers_cut=" + std::to_string(stats.slow_consumers_cut) +
           " taken_over=" + std::to_string(stats.sessions_taken_over) +
           " auth_failures=" + std::to_string(stats.auth_failures) +
           " topics_refused=" + std::to_string(stats.topics_refused) +
           " bad_connects=" + std::to_string(stats.bad_connects);
}

Broker::Broker(BrokerConfig config, Logger& logger)
    : config_(config),
      queue_bound_(config.max_queue_bytes == 0 ? std::numeric_limits<std::size_t>::max()
                                               : config.max_queue_bytes),
      logger_(logger) {}

Broker::~Broker() = default;

FrameResult Broker::handle_frame(Connection& connection, std::string_view frame, TimePoint now) {
    const FrameResult result = act_on_frame(connection, frame, now);
    // Cut off only now, never while a fan-out walks a topic's subscribers: losing a client may
    // remove topics and (with the lost-client cap) other clients.
    if (!slow_consumers_.empty()) {
        cut_off_slow_consumers(now);
    }
    return result;
}

FrameResult Broker::act_on_frame(Connection& connection, std::string_view frame, TimePoint now) {
    if (frame.empty()) {
        return {};  // the protocol says empty frames are ignored
    }
    const Command command = parse_command(frame);
    Client* const client = connection.client_;
    if (client == nullptr) {
        if (command.kind != CommandKind::connect || !command.has_argument) {
            logger_.error("Closing a connection whose first frame is not CONNECT <name>");
            ++stats_.bad_connects;
            return {FrameResult::Next::close, kExpectedConnect};
        }
        return connect(connection, command.argument, command.data, now);
    }
    switch (command.kind) {
        case CommandKind::publish:
            if (command.has_argument) {
                publish(*client, command.argument, command.data, now);
            }
            break;
        case CommandKind::subscribe:
            if (command.has_argument) {
                subscribe(*client, command.argument, now);
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

FrameResult Broker::connect(Connection& connection, std::string_view name, std::string_view secret,
                            TimePoint now) {
    if (!is_valid_name(name)) {
        logger_.error("Refused a CONNECT with an invalid name of ", name.size(), " bytes");
        ++stats_.bad_connects;
        return {FrameResult::Next::close, kInvalidName};
    }
    if (!secret.empty() && !is_valid_secret(secret)) {
        logger_.error("Refused CONNECT '", name, "': invalid secret");
        ++stats_.bad_connects;
        return {FrameResult::Next::close, kInvalidSecret};
    }
    if (secret.empty() && config_.require_secret) {
        ++stats_.auth_failures;
        logger_.error("Refused CONNECT '", name, "' without a secret (--require-secret)");
        return {FrameResult::Next::close, kSecretRequired};
    }
    const auto found = clients_.find(name);
    if (found == clients_.end()) {
        add_client(connection, name, secret, now);
        return {};
    }
    return connect_existing(connection, *found->second, secret, now);
}

void Broker::add_client(Connection& connection, std::string_view name, std::string_view secret,
                        TimePoint now) {
    auto client = std::make_unique<Client>(std::string{name});
    Client& added = *client;
    if (!secret.empty()) {
        added.secret_ = std::make_unique<const std::string>(secret);
    }
    clients_.emplace(added.name(), std::move(client));
    attach(connection, added);
    std::string reply;
    append_frame(reply, kConnAccepted);
    deliver(added, reply, now);
    logger_.info("Client '", added.name(), "' added", secret.empty() ? "" : " (with a secret)");
}

// The original rules, plus the secret extension: a client that has a secret is resumed, or
// taken over from a half-open connection, only by a CONNECT with the same secret.
FrameResult Broker::connect_existing(Connection& connection, Client& client,
                                     std::string_view secret, TimePoint now) {
    if (client.connected() && secret.empty()) {
        logger_.error("Refused CONNECT '", client.name(), "': the name is connected already");
        return {FrameResult::Next::close, kNameTaken};
    }
    if (client.secret_ != nullptr && !secrets_match(*client.secret_, secret)) {
        return refuse_secret(client, secret.empty());
    }
    if (client.connected()) {
        if (client.secret_ == nullptr) {
            logger_.error("Refused CONNECT '", client.name(),
                          "': the name is connected already and has no secret");
            return {FrameResult::Next::close, kNameTaken};
        }
        take_over(connection, client, now);
        return {};
    }
    if (client.secret_ == nullptr && !secret.empty()) {
        client.secret_ = std::make_unique<const std::string>(secret);
    }
    --lost_count_;
    lost_queued_bytes_ -= client.outbound_.size();
    restore(connection, client, now);
    return {};
}

FrameResult Broker::refuse_secret(Client& client, bool secret_missing) {
    ++stats_.auth_failures;
    ++client.failed_attempts_;
    const Clock::duration delay = refusal_delay(client.failed_attempts_);
    logger_.error(
        "Refused CONNECT '", client.name(),
        "': ", secret_missing ? "no secret given" : "wrong secret", " (", client.failed_attempts_,
        " failed attempt(s) since its last resume; answering after ", seconds_text(delay), ")");
    return {FrameResult::Next::close, kNotAuthorized, delay};
}

void Broker::restore(Connection& connection, Client& client, TimePoint now) {
    ++client.loss_generation;  // its entry in the lost FIFO no longer expires it
    ++stats_.clients_restored;
    client.failed_attempts_ = 0;
    // A backlog that overflowed while lost gets a new grace period to be read.
    client.overflow_since_ = now;
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
    total_queued_bytes_ += reply.size();
    attach(connection, client);
    connection.outbound_ready();
    logger_.info("Client '", client.name(), "' restored with ", client.topics_.size(),
                 " subscription(s) and ", queued, " queued message(s)");
}

void Broker::take_over(Connection& connection, Client& client, TimePoint now) {
    Connection* const old = client.connection_;
    detach(client);
    ++stats_.sessions_taken_over;
    logger_.info("Client '", client.name(),
                 "' resumed with its secret while connected: closing its old connection");
    old->close_requested("taken over by a new connection with the client's secret");
    restore(connection, client, now);
}

void Broker::attach(Connection& connection, Client& client) {
    connection.client_ = &client;
    client.connection_ = &connection;
}

void Broker::detach(Client& client) {
    if (client.connection_ != nullptr) {
        client.connection_->client_ = nullptr;
        client.connection_ = nullptr;
    }
}

bool Broker::topic_allowed(Client& client, std::string_view topic_name, TimePoint now) {
    if (!over_limit(topic_name.size(), config_.max_topic_length)) {
        return true;
    }
    ++stats_.topics_refused;
    logger_.error("Client '", client.name(), "' used a topic of ", topic_name.size(),
                  " bytes (the limit is ", config_.max_topic_length, ")");
    send_error(client,
               "ERROR: Topic too long (the limit is " + std::to_string(config_.max_topic_length) +
                   " bytes)",
               now);
    return false;
}

void Broker::subscribe(Client& client, std::string_view topic_name, TimePoint now) {
    auto found = topics_.find(topic_name);
    if (found != topics_.end() && std::find(client.topics_.begin(), client.topics_.end(),
                                            &found->second) != client.topics_.end()) {
        logger_.verbose("Client '", client.name(), "' is already subscribed to '",
                        Escaped{topic_name}, "'");
        return;
    }
    if (!topic_allowed(client, topic_name, now)) {
        return;
    }
    if (over_limit(client.topics_.size() + 1, config_.max_topics_per_client)) {
        ++stats_.topics_refused;
        logger_.error("Client '", client.name(), "' reached the limit of ",
                      config_.max_topics_per_client, " subscriptions");
        send_error(client,
                   "ERROR: Too many subscriptions (the limit is " +
                       std::to_string(config_.max_topics_per_client) + " per client)",
                   now);
        return;
    }
    if (found == topics_.end()) {
        found = topics_.emplace(std::string{topic_name}, Topic{}).first;
        found->second.name = found->first;
    }
    Topic* const topic = &found->second;
    client.topics_.push_back(topic);
    topic->subscribers.push_back(&client);
    logger_.info("Client '", client.name(), "' subscribed to '", Escaped{topic_name}, "'");
}

void Broker::unsubscribe(Client& client, std::string_view topic_name) {
    const auto found = topics_.find(topic_name);
    Topic* const topic = found == topics_.end() ? nullptr : &found->second;
    const auto in_client = std::find(client.topics_.begin(), client.topics_.end(), topic);
    if (topic == nullptr || in_client == client.topics_.end()) {
        logger_.verbose("Client '", client.name(), "' was not subscribed to '", Escaped{topic_name},
                        "'");
        return;
    }
    client.topics_.erase(in_client);
    auto& subscribers = topic->subscribers;
    subscribers.erase(std::find(subscribers.begin(), subscribers.end(), &client));
    logger_.info("Client '", client.name(), "' unsubscribed from '", Escaped{topic_name}, "'");
    if (subscribers.empty()) {
        topics_.erase(found);
    }
}

void Broker::publish(Client& from, std::string_view topic_name, std::string_view data,
                     TimePoint now) {
    ++stats_.published;
    if (logger_.verbose_enabled()) {
        logger_.verbose("Client '", from.name(), "' published to '", Escaped{topic_name},
                        "': ", Escaped{data});
    }
    const auto found = topics_.find(topic_name);
    if (found == topics_.end()) {
        // Nobody can subscribe to an over-long topic; the publisher still hears why.
        topic_allowed(from, topic_name, now);
        return;
    }
    encoded_.clear();
    append_message_frame(encoded_, topic_name, data);
    for (Client* subscriber : found->second.subscribers) {
        deliver(*subscriber, encoded_, now);
    }
    stats_.delivered += found->second.subscribers.size();
}

void Broker::deliver(Client& client, std::string_view encoded_frame, TimePoint now) {
    OutboundQueue& queue = client.outbound_;
    const bool was_empty = queue.empty();
    const std::size_t before = queue.size();
    std::size_t bound = queue_bound_;
    bool capped_by_total = false;
    const bool lost = !client.connected();
    if (config_.max_total_queue_bytes != 0) {
        const std::size_t room = room_under_global_cap(before, lost);
        capped_by_total = room < bound;
        bound = std::min(bound, room);
    }
    const std::size_t dropped = queue.push(encoded_frame, bound);
    total_queued_bytes_ = total_queued_bytes_ - before + queue.size();
    if (lost) {
        lost_queued_bytes_ = lost_queued_bytes_ - before + queue.size();
    }
    if (dropped > 0) {
        count_drops(client, dropped, capped_by_total, now);
    }
    if (was_empty && client.connection_ != nullptr && !queue.empty()) {
        client.connection_->outbound_ready();
    }
}

// Lost clients together get at most three quarters of the global cap, so that clients that
// vanished (or were made to vanish in numbers by an attacker) cannot starve the connected ones.
std::size_t Broker::lost_clients_share_of_cap() const {
    return config_.max_total_queue_bytes / 4 * 3;
}

// The most a client's queue may hold under the global cap, given everyone else's bytes.
std::size_t Broker::room_under_global_cap(std::size_t own_bytes, bool lost) const {
    const std::size_t cap = config_.max_total_queue_bytes;
    const auto room_in = [](std::size_t limit, std::size_t used) {
        return limit > used ? limit - used : 0;
    };
    std::size_t room = room_in(cap, total_queued_bytes_ - own_bytes);
    if (lost) {
        room = std::min(room, room_in(lost_clients_share_of_cap(), lost_queued_bytes_ - own_bytes));
    }
    return room;
}

void Broker::count_drops(Client& client, std::size_t dropped, bool capped_by_total, TimePoint now) {
    stats_.dropped += dropped;
    if (capped_by_total) {
        stats_.dropped_global_cap += dropped;
        if (!global_cap_reached_) {
            global_cap_reached_ = true;
            logger_.error("Queued bytes of all clients reached the global cap (",
                          config_.max_total_queue_bytes, " bytes, of which lost clients may hold ",
                          lost_clients_share_of_cap(),
                          "): dropping the oldest messages of the clients that receive");
        }
    }
    if (client.dropped_in_episode == 0) {
        client.overflow_since_ = now;
        logger_.error("Queue of client '", client.name(), "' is full at ", client.outbound_.size(),
                      " bytes: dropping its oldest messages");
    }
    client.dropped_in_episode += dropped;
    const bool grace_over = config_.slow_consumer_grace > Clock::duration::zero() &&
                            now - client.overflow_since_ >= config_.slow_consumer_grace;
    if (grace_over && client.connected() &&
        std::find(slow_consumers_.begin(), slow_consumers_.end(), &client) ==
            slow_consumers_.end()) {
        slow_consumers_.push_back(&client);
    }
}

void Broker::send_error(Client& client, std::string_view error_frame, TimePoint now) {
    std::string encoded;
    append_frame(encoded, error_frame);
    deliver(client, encoded, now);
}

void Broker::cut_off_slow_consumers(TimePoint now) {
    std::vector<Client*> clients;
    clients.swap(slow_consumers_);
    for (Client* client : clients) {
        Connection* const connection = client->connection_;
        if (connection == nullptr) {
            continue;  // listed while connected; checked again in case that changed
        }
        ++stats_.slow_consumers_cut;
        logger_.error("Client '", client->name(), "' cut off: its queue has been full for ",
                      seconds_text(now - client->overflow_since_),
                      " (slow consumer); it is lost now and keeps its newest messages");
        detach(*client);
        connection->close_requested("slow consumer");
        become_lost(*client, now);
    }
}

void Broker::take_outbound(Connection& connection, std::string& out) {
    Client* const client = connection.client_;
    if (client == nullptr) {
        out.clear();
        return;
    }
    client->outbound_.take_all(out);
    total_queued_bytes_ -= out.size();
    if (global_cap_reached_ && total_queued_bytes_ <= config_.max_total_queue_bytes / 2) {
        global_cap_reached_ = false;
    }
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
    detach(*client);
    become_lost(*client, now);
}

void Broker::become_lost(Client& client, TimePoint now) {
    ++stats_.clients_lost;
    ++lost_count_;
    lost_queued_bytes_ += client.outbound_.size();
    if (config_.lost_timeout <= Clock::duration::zero()) {
        remove_client(client, "lost, and the retention period is 0");
        return;
    }
    ++client.loss_generation;
    lost_fifo_.push_back({client.name(), now + config_.lost_timeout, client.loss_generation});
    client.outbound_.release_memory_if_empty();
    logger_.info("Client '", client.name(), "' lost; keeping its ", client.topics_.size(),
                 " subscription(s) and messages for ", seconds_text(config_.lost_timeout));
    if (over_limit(lost_count_, config_.max_lost_clients)) {
        remove_longest_lost();
    }
}

// Takes the longest-lost client's entry off the FIFO (only if due by `due_by`, when given).
Client* Broker::pop_longest_lost(std::optional<TimePoint> due_by) {
    while (!lost_fifo_.empty() && (!due_by || lost_fifo_.front().deadline <= *due_by)) {
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
        return &client;
    }
    return nullptr;
}

void Broker::remove_longest_lost() {
    Client* const client = pop_longest_lost(std::nullopt);
    if (client == nullptr) {
        return;
    }
    ++stats_.lost_clients_evicted;
    remove_client(*client, "more than " + std::to_string(config_.max_lost_clients) +
                               " lost clients; the longest lost is removed first, " +
                               std::to_string(client->outbound_.frame_count()) +
                               " queued message(s) discarded");
}

void Broker::expire_lost_clients(TimePoint now) {
    while (Client* const client = pop_longest_lost(now)) {
        ++stats_.clients_expired;
        const std::size_t queued = client->outbound_.frame_count();
        remove_client(*client, "retention period of " + seconds_text(config_.lost_timeout) +
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
    if (client.connected()) {
        detach(client);
    } else {
        --lost_count_;
        lost_queued_bytes_ -= client.outbound_.size();
    }
    total_queued_bytes_ -= client.outbound_.size();
    logger_.info("Client '", client.name(), "' removed (", reason, ")");
    clients_.erase(std::string_view{client.name()});
}

const Client* Broker::find_client(std::string_view name) const {
    const auto found = clients_.find(name);
    return found == clients_.end() ? nullptr : found->second.get();
}

std::string Broker::check_consistency() const {
    std::size_t queued = 0, lost = 0, lost_queued = 0;
    for (const auto& [name, client] : clients_) {
        if (name != client->name()) {
            return "client map key differs from the name '" + client->name() + "'";
        }
        queued += client->outbound_.size();
        if (client->connection_ == nullptr) {
            ++lost;
            lost_queued += client->outbound_.size();
        } else if (client->connection_->client_ != client.get()) {
            return "client '" + client->name() + "' and its connection disagree";
        }
        for (const Topic* topic : client->topics_) {
            const auto& subscribers = topic->subscribers;
            if (std::count(subscribers.begin(), subscribers.end(), client.get()) != 1) {
                return "client '" + client->name() + "' is not once among its topic's subscribers";
            }
        }
    }
    for (const auto& [name, topic] : topics_) {
        if (topic.subscribers.empty() || topic.name != name) {
            return "topic '" + name + "' is empty or misnamed";
        }
        for (const Client* subscriber : topic.subscribers) {
            const auto& topics = subscriber->topics_;
            if (std::count(topics.begin(), topics.end(), &topic) != 1) {
                return "a subscriber of '" + name + "' does not list it once";
            }
        }
    }
    if (queued != total_queued_bytes_) {
        return "total queued bytes " + std::to_string(total_queued_bytes_) +
               " != " + std::to_string(queued);
    }
    if (lost_queued != lost_queued_bytes_) {
        return "lost clients' queued bytes " + std::to_string(lost_queued_bytes_) +
               " != " + std::to_string(lost_queued);
    }
    if (lost != lost_count_) {
        return "lost count " + std::to_string(lost_count_) + " != " + std::to_string(lost);
    }
    return {};
}

const Topic* Broker::find_topic(std::string_view name) const {
    const auto found = topics_.find(name);
    return found == topics_.end() ? nullptr : &found->second;
}

}  // namespace pubsubx
