#include "pubsubx/broker.hpp"

#include <algorithm>
#include <cstdio>
#include <utility>

#include "pubsubx/protocol.hpp"

namespace pubsubx {

namespace {
// An encoded message frame of at least this many bytes, to more than one subscriber, is shared
// by their queues (one buffer, gathered into each write) instead of copied into each (issue
// 16). Measured with bench/matrix.py, sharing every frame from 1 KiB against copying: 1 KiB
// lost in every shape (0.53x 1x1, 0.62x 1x10, 0.83x 1x100), 2 KiB won with 10 and 100
// subscribers (1.30x, 1.18x), 4 and 8 KiB too (1.67x/1.23x, 1.15x/1.59x); 1x1 lost at every
// size (0.66x-0.91x: a buffer and a shared_ptr allocated per message to save one copy), hence
// a single subscriber keeps the copy.
constexpr std::size_t kShareFramesFrom = 2048;
constexpr std::string_view kExpectedConnect{"ERROR: Expected CONNECT <name> as the first frame"};
constexpr std::string_view kWildcardInPublish{
    "ERROR: Wildcards are not allowed in a PUBLISH topic"};
constexpr std::string_view kHashNotLast{
    "ERROR: Wildcard '#' is allowed only as the last level of a SUBSCRIBE topic"};
constexpr std::string_view kReplyTopicPublish{
    "ERROR: Topics ERROR:, OK: and RESTORED are reserved: their messages would read as the "
    "broker's replies"};
constexpr std::string_view kNameMoving{
    "ERROR: Name is moving to another node of the cluster; retry in a moment"};
constexpr std::string_view kSystemTopicPublish{
    "ERROR: Topics under $SYS/ are the broker's own; clients cannot PUBLISH to them"};

bool over_limit(std::size_t value, std::size_t limit) {
    return limit != 0 && value > limit;
}

// --max-topic-length, within what the broker can hold (0: no limit of the operator's).
std::size_t topic_length_limit(const BrokerConfig& config) {
    return config.max_topic_length == 0 ? kLongestTopicName
                                        : std::min(config.max_topic_length, kLongestTopicName);
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
           " recovered=" + std::to_string(stats.clients_recovered) +
           " expired=" + std::to_string(stats.clients_expired) +
           " lost_evicted=" + std::to_string(stats.lost_clients_evicted) +
           " slow_consumers_cut=" + std::to_string(stats.slow_consumers_cut) +
           " control_backlog_cut=" + std::to_string(stats.control_backlog_cut) +
           " taken_over=" + std::to_string(stats.sessions_taken_over) +
           " auth_failures=" + std::to_string(stats.auth_failures) +
           " auth_throttled=" + std::to_string(stats.auth_throttled) +
           " topics_refused=" + std::to_string(stats.topics_refused) +
           " bad_connects=" + std::to_string(stats.bad_connects) +
           " not_allowed=" + std::to_string(stats.not_allowed) +
           " subscriptions_revoked=" + std::to_string(stats.subscriptions_revoked);
}

Broker::Broker(BrokerConfig config, Logger& logger)
    : config_(config),
      logger_(logger),
      accounting_(config_, logger_, stats_, effects_),
      lifecycle_(config_, logger_, stats_, effects_, routing_, accounting_),
      admission_(config_, logger_, stats_) {}

Broker::~Broker() = default;

void Broker::update_limits(const BrokerConfig& limits) {
    adopt_run_time_limits(config_, limits);
    accounting_.refresh_queue_bound();
}

FrameResult Broker::handle_frame(Connection& connection, std::string_view frame, TimePoint now,
                                 const SourceAddress& source, FrameEnd end) {
    FrameResult result = act_on_frame(connection, frame, now, source, end);
    // Cut off only now, never while a fan-out walks a topic's subscribers: losing a client may
    // remove topics and (with the lost-client cap) other clients.
    if (accounting_.has_cut_offs()) {
        cut_off(now);
    }
    // The core asked to close the sender itself (cut off, say): it must read no more, or a
    // next frame could attach a client to a connection about to be closed.
    if (result.next == FrameResult::Next::read_more && asked_to_close(connection)) {
        result.next = FrameResult::Next::close;
    }
    return result;
}

bool Broker::asked_to_close_slow(const Connection& connection) const {
    return std::any_of(
        effects_.close.begin(), effects_.close.end(),
        [&](const CloseRequest& request) { return request.connection == &connection; });
}

// "PUBLISH <topic> <data>" is delivered as "<topic> <data>": with the delimiter after the frame,
// the delivery frame is there already, from the topic to the delimiter's end. Not when the frame
// has no second space ("PUBLISH t" is delivered as "t ").
std::string_view delivery_within(std::string_view frame, const Command& command, FrameEnd end) {
    const char* const frame_end = frame.data() + frame.size();
    if (end != FrameEnd::delimiter_follows ||
        command.argument.data() + command.argument.size() == frame_end) {
        return {};
    }
    return {command.argument.data(),
            static_cast<std::size_t>(frame_end - command.argument.data()) + kDelimiter.size()};
}

FrameResult Broker::act_on_frame(Connection& connection, std::string_view frame, TimePoint now,
                                 const SourceAddress& source, FrameEnd end) {
    if (frame.empty()) {
        return {};  // the protocol says empty frames are ignored
    }
    const Command command = parse_command(frame);
    Client* const client = connection.client();
    if (client == nullptr) {
        // A vouch is for this frame alone, whatever it turns out to be.
        const bool vouched = std::exchange(vouched_, nullptr) == &connection;
        if (asked_to_close(connection)) {
            return {FrameResult::Next::close, {}, {}};
        }
        if (command.kind != CommandKind::connect || !command.has_argument) {
            logger_.error("Closing a connection whose first frame is not CONNECT <name>");
            ++stats_.bad_connects;
            return {FrameResult::Next::close, kExpectedConnect, {}};
        }
        return connect(connection, command.argument, command.data, now, source, vouched);
    }
    if (!command.has_argument && command.kind != CommandKind::disconnect) {
        return {};
    }
    switch (command.kind) {
        case CommandKind::publish:
            delivery_in_frame_ = delivery_within(frame, command, end);
            publish(*client, command.argument, command.data, now);
            delivery_in_frame_ = {};
            break;
        case CommandKind::subscribe:
            subscribe(*client, command.argument);
            break;
        case CommandKind::unsubscribe:
            unsubscribe(*client, command.argument);
            break;
        case CommandKind::disconnect:
            // The error frames for its last frames (a refused PUBLISH, say) still go out before
            // the close, even when the DISCONNECT came in the same read: with no acks in the
            // protocol, a client learns of a refusal only by reading until the close. Its
            // queued messages are forgotten with it.
            owed_frames_ = accounting_.take_control(*client);
            lifecycle_.remove(*client, "disconnected");
            return {FrameResult::Next::close, {}, owed_frames_};
        case CommandKind::connect:
        case CommandKind::unknown:
            // The original server ignores what it does not know, and a second CONNECT.
            logger_.verbose("Client '", client->name(), "' sent an ignored frame");
            break;
    }
    return {};
}

FrameResult Broker::connect(Connection& connection, std::string_view name, std::string_view secret,
                            TimePoint now, const SourceAddress& source, bool vouched) {
    Client* const existing = lifecycle_.find(name);
    if (cluster_ != nullptr && accounts_ != nullptr && accounts_->user(name) != nullptr) {
        // A user's password is settled before the cluster is asked: the node holding the
        // client hands it over on this node's word (may_hand_over).
        Admission login = admission_.decide(source, name, secret, existing, now, vouched);
        if (login.verdict == Admission::Verdict::refuse) {
            refusal_ = std::move(login.error_frame);
            return {FrameResult::Next::close, refusal_, {}};
        }
        if (login.verdict == Admission::Verdict::check_password) {
            return {FrameResult::Next::await_login, {}, {}};
        }
    }
    // A name or secret that admission would refuse anyway is not worth asking the cluster.
    if (cluster_ != nullptr && is_valid_name(name) && (secret.empty() || is_valid_secret(secret))) {
        switch (cluster_->admit_name(connection, name, existing != nullptr)) {
            case NameAdmission::local:
                break;
            case NameAdmission::ask_registry:
                return {FrameResult::Next::await_name, {}, {}};
            case NameAdmission::moving:
                logger_.error("Refused CONNECT '", name, "': it is being handed over");
                return {FrameResult::Next::close, kNameMoving, {}};
        }
    }
    Admission admission = admission_.decide(source, name, secret, existing, now, vouched);
    Client* client = admission.client;
    switch (admission.verdict) {
        case Admission::Verdict::check_password:
            return {FrameResult::Next::await_login, {}, {}};
        case Admission::Verdict::admit_new:
            client = &lifecycle_.admit(connection, name, secret);
            break;
        case Admission::Verdict::restore:
            // What the rights allow now is all it gets back (RESTORED lists it).
            if (const Rights* rights =
                    accounts_ != nullptr ? accounts_->rights_for_name(name) : nullptr) {
                end_forbidden_subscriptions(*client, *rights);
            }
            lifecycle_.restore(connection, *client, now, secret);
            break;
        case Admission::Verdict::take_over:
            lifecycle_.take_over(connection, *client, now);
            break;
        case Admission::Verdict::refuse:
            refusal_ = std::move(admission.error_frame);
            return {FrameResult::Next::close, refusal_, {}};
    }
    if (accounts_ != nullptr && accounts_->user(name) != nullptr) {
        log_in(*client, secret);
    } else if (client->credentials_ != nullptr) {
        client->credentials_->rights = nullptr;  // anonymous, whatever it was before
    }
    if (client->credentials_ != nullptr) {
        client->credentials_->trusted_source = source;
    }
    return {};
}

// The password is the client's secret too: a changed one replaces the old (and the store's).
// A user its certificate vouched for may have given none: it has credentials all the same,
// which hold its rights.
void Broker::log_in(Client& client, std::string_view password) {
    const bool new_secret =
        client.credentials_ == nullptr || !client.credentials_->secret.matches(password);
    if (client.credentials_ == nullptr) {
        client.credentials_ = std::make_unique<Credentials>();
    }
    if (new_secret) {
        client.credentials_->secret = SecretDigest::of(password);
        if (persistence_ != nullptr) {
            persistence_->client_saved(client);
        }
    }
    client.credentials_->rights = accounts_->user(client.name())->rights;
}

// The length first: an over-long invalid topic is logged by its size, so a peer cannot make
// the log grow faster than it sends.
bool Broker::topic_allowed(Client& client, std::string_view topic_name) {
    if (topic_name.size() > topic_length_limit(config_)) {
        ++stats_.topics_refused;
        logger_.error("Client '", client.name(), "' used a topic of ", topic_name.size(),
                      " bytes (the limit is ", topic_length_limit(config_), ")");
        send_error(client, "ERROR: Topic too long (the limit is " +
                               std::to_string(topic_length_limit(config_)) + " bytes)");
        return false;
    }
    if (!is_valid_topic(topic_name)) {
        refuse_topic(client, topic_name, "an invalid topic", kInvalidTopic,
                     " (not UTF-8, or a control character)");
        return false;
    }
    return true;
}

// The log shows at most 256 bytes of the topic, so that it grows no faster than the peer sends.
void Broker::refuse_topic(Client& client, std::string_view topic_name, std::string_view what,
                          std::string_view error_frame, std::string_view detail) {
    ++stats_.topics_refused;
    constexpr std::size_t kLogged = 256;
    logger_.error("Client '", client.name(), "' used ", what, " '",
                  Escaped{topic_name.substr(0, kLogged)},
                  topic_name.size() > kLogged ? "'..." : "'", detail);
    send_error(client, error_frame);
}

// A SUBSCRIBE or UNSUBSCRIBE topic: an exact topic or a wildcard filter.
bool Broker::filter_allowed(Client& client, std::string_view filter) {
    if (!topic_allowed(client, filter)) {
        return false;
    }
    const TopicShape shape = topic_shape(filter);
    if (shape.hash_not_last) {
        refuse_topic(client, filter, "a filter with '#' before its last level", kHashNotLast);
        return false;
    }
    const std::size_t max_levels = max_filter_levels();
    if (shape.wildcard && shape.levels > max_levels) {
        refuse_topic(client, filter,
                     "a wildcard filter of " + std::to_string(shape.levels) + " levels",
                     "ERROR: Too many levels in a wildcard filter (the limit is " +
                         std::to_string(max_levels) + ")");
        return false;
    }
    return true;
}

// 0 or a larger value: the tree's own ceiling.
std::size_t Broker::max_filter_levels() const {
    return config_.max_topic_levels == 0
               ? FilterTree::kMaxLevels
               : std::min(config_.max_topic_levels, FilterTree::kMaxLevels);
}

// A stored subscription passes today's limits, which may be lower than when it was made.
bool Broker::recoverable_filter(std::string_view filter) const {
    const TopicShape shape = topic_shape(filter);
    return filter.size() <= topic_length_limit(config_) && is_valid_topic(filter) &&
           !shape.hash_not_last && !(shape.wildcard && shape.levels > max_filter_levels());
}

bool Broker::publish_topic_allowed(Client& client, std::string_view topic_name) {
    if (!topic_allowed(client, topic_name)) {
        return false;
    }
    switch (publish_ban(topic_name)) {
        case PublishBan::none:
            return true;
        case PublishBan::wildcard:
            refuse_topic(client, topic_name, "a wildcard in the PUBLISH topic", kWildcardInPublish);
            break;
        case PublishBan::reply_word:
            refuse_topic(client, topic_name, "a reply's first word as the PUBLISH topic",
                         kReplyTopicPublish);
            break;
        case PublishBan::system:
            refuse_topic(client, topic_name, "the broker's own $SYS in the PUBLISH topic",
                         kSystemTopicPublish);
            break;
    }
    return false;
}

// A topic with subscribers was checked when it was subscribed to (its record says whether a
// client may publish to it); any other is checked now. Inline: on the fast path of a publish.
inline bool Broker::may_publish(Client& from, const Topic* topic, std::string_view topic_name) {
    return (topic != nullptr && topic->open_to_publish) || publish_topic_allowed(from, topic_name);
}

void Broker::subscribe(Client& client, std::string_view topic_name) {
    if (routing_.is_subscribed(client, topic_name)) {
        logger_.verbose("Client '", client.name(), "' is already subscribed to '",
                        Escaped{topic_name}, "'");
        return;
    }
    if (!filter_allowed(client, topic_name)) {
        return;
    }
    if (accounts_ != nullptr && !rights_of(client).may_subscribe(topic_name)) {
        refuse_not_allowed(client, "subscribe", topic_name);
        return;
    }
    if (over_limit(client.subscriptions().size() + 1, config_.max_topics_per_client)) {
        ++stats_.topics_refused;
        logger_.error("Client '", client.name(), "' reached the limit of ",
                      config_.max_topics_per_client, " subscriptions");
        send_error(client, "ERROR: Too many subscriptions (the limit is " +
                               std::to_string(config_.max_topics_per_client) + " per client)");
        return;
    }
    routing_.subscribe(client, topic_name);
    if (persistence_ != nullptr) {
        persistence_->subscribed(client, topic_name);
    }
    logger_.info("Client '", client.name(), "' subscribed to '", Escaped{topic_name}, "'");
}

void Broker::unsubscribe(Client& client, std::string_view topic_name) {
    if (!routing_.unsubscribe(client, topic_name)) {
        if (filter_allowed(client, topic_name)) {
            logger_.verbose("Client '", client.name(), "' was not subscribed to '",
                            Escaped{topic_name}, "'");
        }
        return;
    }
    if (persistence_ != nullptr) {
        persistence_->unsubscribed(client, topic_name);
    }
    logger_.info("Client '", client.name(), "' unsubscribed from '", Escaped{topic_name}, "'");
}

// One topic or filter: its subscribers are distinct clients. Inline: it is the whole of the
// fast path of a publish.
inline void Broker::deliver_to(const Topic& topic, std::string_view topic_name,
                               std::string_view data, TimePoint now) {
    const std::string_view encoded = delivery_frame(topic_name, data);
    if (encoded.size() >= kShareFramesFrom && topic.subscribers.size() > 1) [[unlikely]] {
        const SharedFrame shared = share(encoded);
        for (const Subscriber& subscriber : topic.subscribers) {
            accounting_.deliver_shared(*subscriber.client, shared, now);
        }
        stats_.delivered += topic.subscribers.size();
        return;
    }
    for (const Subscriber& subscriber : topic.subscribers) {
        accounting_.deliver(*subscriber.client, encoded, now);
    }
    stats_.delivered += topic.subscribers.size();
}

// Inline: it is on the fast path of every publish.
inline std::string_view Broker::delivery_frame(std::string_view topic_name, std::string_view data) {
    if (!delivery_in_frame_.empty()) [[likely]] {
        return delivery_in_frame_;
    }
    encoded_.clear();
    append_message_frame(encoded_, topic_name, data);
    return encoded_;
}

// Inline: it is on the fast path of every publish.
inline void Broker::count_publish(const Client& from, std::string_view topic_name,
                                  std::string_view data) {
    ++stats_.published;
    if (logger_.verbose_enabled()) {
        logger_.verbose("Client '", from.name(), "' published to '", Escaped{topic_name},
                        "': ", Escaped{data});
    }
}

void Broker::publish(Client& from, std::string_view topic_name, std::string_view data,
                     TimePoint now) {
    if (routing_.has_filters()) {
        publish_among_filters(from, topic_name, data, now);
        return;
    }
    // The fast path: no filter exists, so only the topic's own subscribers can match.
    const Topic* const topic = routing_.find_published(topic_name);
    if (!may_publish(from, topic, topic_name)) {
        return;  // refused: not published
    }
    if (accounts_ != nullptr && !permitted_to_publish(from, topic_name)) [[unlikely]] {
        return;
    }
    count_publish(from, topic_name, data);
    // Before the local delivery, which then stays the last call (the fast path's code is as
    // without a cluster).
    if (cluster_ != nullptr) [[unlikely]] {
        cluster_->published(topic_name, data);
    }
    if (topic != nullptr) {
        deliver_to(*topic, topic_name, data, now);
    }
}

// A cached route vouches for its topic; otherwise the topic is checked as on the fast path.
void Broker::publish_among_filters(Client& from, std::string_view topic_name, std::string_view data,
                                   TimePoint now) {
    const Route* route = routing_.cached_route(topic_name);
    if (route == nullptr) {
        const Topic* const topic = routing_.find_published(topic_name);
        if (!may_publish(from, topic, topic_name)) {
            return;
        }
        route = &routing_.route_and_cache(topic_name, topic);
    }
    if (accounts_ != nullptr && !permitted_to_publish(from, topic_name)) [[unlikely]] {
        return;
    }
    count_publish(from, topic_name, data);
    if (cluster_ != nullptr) [[unlikely]] {
        cluster_->published(topic_name, data);
    }
    deliver_to_all(route->exact, route->filters, topic_name, data, now);
}

// The origin node checked the topic; the cached route serves as for a local publish.
void Broker::publish_from_cluster(std::string_view topic_name, std::string_view data,
                                  TimePoint now) {
    const Topic* const exact = routing_.find(topic_name);
    if (!routing_.has_filters()) {
        if (exact != nullptr) {
            deliver_to(*exact, topic_name, data, now);
        }
    } else {
        const Route* route = routing_.cached_route(topic_name);
        if (route == nullptr) {
            route = &routing_.route_and_cache(topic_name, exact);
        }
        deliver_to_all(route->exact, route->filters, topic_name, data, now);
    }
    if (accounting_.has_cut_offs()) {
        cut_off(now);
    }
}

// Not cached: a cached route vouches for a topic that clients may publish to.
void Broker::publish_system(std::string_view topic_name, std::string_view data, TimePoint now) {
    matched_.clear();
    routing_.match_filters(topic_name, matched_);
    deliver_to_all(routing_.find(topic_name), matched_, topic_name, data, now);
    // As after a frame: a subscriber this made a slow consumer is cut off now. Left listed
    // until the next frame, it could be lost and removed meanwhile (the list would dangle).
    if (accounting_.has_cut_offs()) {
        cut_off(now);
    }
}

// `exact` is the topic's record, or null.
void Broker::deliver_to_all(const Topic* exact, const FilterTree::Matches& filters,
                            std::string_view topic_name, std::string_view data, TimePoint now) {
    // One topic or filter: its subscribers are distinct clients.
    if (filters.empty()) {
        if (exact != nullptr) {
            deliver_to(*exact, topic_name, data, now);
        }
        return;
    }
    if (exact == nullptr && filters.size() == 1) {
        deliver_to(*filters.front(), topic_name, data, now);
        return;
    }
    const std::string_view encoded = delivery_frame(topic_name, data);
    const SharedFrame shared = encoded.size() >= kShareFramesFrom ? share(encoded) : nullptr;
    // Several topics and filters match: a client subscribed to more than one of them gets the
    // message once.
    const std::uint64_t delivery = ++deliveries_;
    const auto deliver_once = [&](const Topic& topic) {
        for (const Subscriber& subscriber : topic.subscribers) {
            Client& client = *subscriber.client;
            if (client.last_delivery_ != delivery) {
                client.last_delivery_ = delivery;
                if (shared != nullptr) {
                    accounting_.deliver_shared(client, shared, now);
                } else {
                    accounting_.deliver(client, encoded, now);
                }
                ++stats_.delivered;
            }
        }
    };
    if (exact != nullptr) {
        deliver_once(*exact);
    }
    for (const Topic* filter : filters) {
        deliver_once(*filter);
    }
}

void Broker::send_error(Client& client, std::string_view error_frame) {
    std::string encoded;
    append_frame(encoded, error_frame);
    accounting_.deliver_control(client, encoded);
}

void Broker::cut_off(TimePoint now) {
    for (const CutOff& cut : accounting_.take_cut_offs()) {
        Client& client = *cut.client;
        if (client.state() != ClientState::connected) {
            continue;  // listed while connected; lost or removed since
        }
        Connection* const connection = client.connection();
        if (cut.why == CutOff::Why::slow_consumer) {
            ++stats_.slow_consumers_cut;
            logger_.error("Client '", client.name(), "' cut off: its queue has been full for ",
                          seconds_text(now - client.overflow_since_),
                          " (slow consumer); it is lost now and keeps its newest messages");
            lifecycle_.lose(client, now, "cut off as a slow consumer");
        } else {
            ++stats_.control_backlog_cut;
            logger_.error("Client '", client.name(), "' cut off: more than ",
                          QueueAccounting::kMaxControlBacklog,
                          " bytes of unread replies; it is lost now");
            lifecycle_.lose(client, now, "cut off: it does not read its replies");
        }
        effects_.close.push_back({connection, "cut off"});
    }
}

void Broker::connection_closed(Connection& connection, TimePoint now) {
    if (Client* const client = connection.client()) {
        lifecycle_.lose(*client, now, "connection ended without DISCONNECT");
    }
}

void Broker::take_outbound(Connection& connection, std::string& out) {
    SharedFrames shared;
    take_outbound(connection, out, shared);
    shared.merge_into(out);
}

void Broker::take_outbound(Connection& connection, std::string& out, SharedFrames& shared) {
    Client* const client = connection.client();
    if (client == nullptr) {
        out.clear();
        shared.clear();
        return;
    }
    accounting_.take_for_write(*client, out, shared);
}

// The delivery frame is encoded_ (moved, not copied: encoded_ allocates afresh for the next
// large one) or the PUBLISH frame's own bytes (copied once: the read buffer they are in is
// reused by the next read).
SharedFrame Broker::share(std::string_view encoded) {
    if (encoded.data() == encoded_.data()) {
        return std::make_shared<const std::string>(std::move(encoded_));
    }
    return std::make_shared<const std::string>(encoded);
}

void Broker::write_completed(Connection& connection, TimePoint now, std::size_t socket_unsent) {
    if (Client* const client = connection.client()) {
        accounting_.write_completed(*client, now, socket_unsent);
    }
}

void Broker::write_interrupted(Connection& connection, std::string_view buffer,
                               std::size_t written) {
    Client* const client = connection.client();
    if (client == nullptr) {
        return;
    }
    // The first frame not sent whole starts after the last delimiter that went out.
    const std::size_t last = written >= kDelimiter.size()
                                 ? buffer.rfind(kDelimiter, written - kDelimiter.size())
                                 : std::string_view::npos;
    const std::size_t unsent_from = last == std::string_view::npos ? 0 : last + kDelimiter.size();
    accounting_.write_interrupted(*client, buffer, unsent_from);
}

void Broker::socket_drained(Connection& connection, TimePoint now, std::size_t socket_unsent) {
    if (Client* const client = connection.client()) {
        accounting_.end_episode_if_drained(*client, now, socket_unsent);
    }
}

void Broker::release_idle_memory(Connection& connection) {
    if (Client* const client = connection.client()) {
        client->outbound_.release_all_memory_if_empty();
    }
}

void Broker::expire_lost_clients(TimePoint now) {
    lifecycle_.expire(now);
}

bool Broker::recover(const RecoveredClient& stored, TimePoint now) {
    return take_in(stored, now, StoreKnows::yes);
}

// With StoreKnows::no, the store hears of the client like of a new one (its lost queue is
// recorded by the accounting as messages arrive).
bool Broker::take_in(const RecoveredClient& stored, TimePoint now, StoreKnows store_knows) {
    const std::uint64_t evicted_before = stats_.lost_clients_evicted;
    const std::uint64_t dropped_before = stats_.dropped;
    Client* const client = lifecycle_.recover(stored.id, stored.name, stored.secret, now);
    if (client == nullptr) {
        return false;
    }
    if (store_knows == StoreKnows::no && persistence_ != nullptr) {
        persistence_->client_saved(*client);
    }
    bool as_stored = true;
    for (const std::string& topic : stored.subscriptions) {
        if (!recoverable_filter(topic) || routing_.is_subscribed(*client, topic) ||
            over_limit(client->subscriptions().size() + 1, config_.max_topics_per_client)) {
            logger_.error("Client '", client->name(), "': stored subscription '",
                          Escaped{topic.substr(0, 256)}, "' is not kept (a limit is lower now)");
            as_stored = false;
            continue;
        }
        routing_.subscribe(*client, topic);
        if (store_knows == StoreKnows::no && persistence_ != nullptr) {
            persistence_->subscribed(*client, topic);
        }
    }
    for_each_encoded_frame(
        stored.frames, [&](std::string_view frame) { accounting_.deliver(*client, frame, now); });
    return as_stored && stats_.lost_clients_evicted == evicted_before &&
           stats_.dropped == dropped_before;
}

bool Broker::may_hand_over(std::string_view name, std::string_view secret,
                           const SourceAddress& source, TimePoint now, std::string& error_frame) {
    Client* const client = lifecycle_.find(name);
    if (client == nullptr) {
        return false;
    }
    if (accounts_ != nullptr && accounts_->user(name) != nullptr) {
        // The asking node logged the user in before it asked (connect): by its password, or by
        // a client certificate this node never sees (no password then). Nodes trust each other
        // (docs/cluster.md), but a password this node knows to be wrong is refused here too.
        if (secret.empty() || accounts_->known_password(name, secret) != Accounts::Known::wrong) {
            return true;
        }
        error_frame = admission_.wrong_password(source, name, now);
        return false;
    }
    Admission admission = admission_.decide(source, name, secret, client, now);
    if (admission.verdict == Admission::Verdict::refuse) {
        error_frame = std::move(admission.error_frame);
        return false;
    }
    return true;
}

std::optional<RecoveredClient> Broker::hand_over(std::string_view name, TimePoint now) {
    Client* const client = lifecycle_.find(name);
    if (client == nullptr) {
        return std::nullopt;
    }
    if (client->connected()) {
        Connection* const connection = client->connection();
        lifecycle_.lose(*client, now, "taken over on another node with the client's secret");
        effects_.close.push_back({connection, "taken over on another node"});
        if (lifecycle_.find(name) == nullptr) {
            return std::nullopt;  // the retention period is 0: nothing to hand over
        }
    }
    RecoveredClient state;
    state.name = client->name();
    if (client->credentials() != nullptr) {
        state.secret = client->credentials()->secret;
    }
    for (const Subscription& subscription : client->subscriptions()) {
        state.subscriptions.emplace_back(subscription.topic->name());
    }
    state.frames = client->outbound().messages();
    lifecycle_.remove(*client, "handed over to another node");
    return state;
}

bool Broker::adopt(const RecoveredClient& state, TimePoint now) {
    const bool as_sent = take_in(state, now, StoreKnows::no);
    // The other node's rights may be older than ours (a reload there has not happened yet).
    Client* const client = lifecycle_.find(state.name);
    if (accounts_ != nullptr && client != nullptr) {
        if (const Rights* rights = accounts_->rights_for_name(client->name())) {
            end_forbidden_subscriptions(*client, *rights);
        }
    }
    return as_sent;
}

const Rights& Broker::rights_of(const Client& client) const {
    if (client.credentials_ != nullptr && client.credentials_->rights != nullptr) {
        return *client.credentials_->rights;
    }
    return *accounts_->anonymous_rights();
}

bool Broker::permitted_to_publish(Client& from, std::string_view topic_name) {
    if (rights_of(from).may_publish(topic_name)) {
        return true;
    }
    refuse_not_allowed(from, "publish", topic_name);
    return false;
}

// `verb` is "publish" or "subscribe". The log shows at most 256 bytes of the topic.
void Broker::refuse_not_allowed(Client& client, std::string_view verb,
                                std::string_view topic_name) {
    ++stats_.not_allowed;
    logger_.error("Client '", client.name(), "' may not ", verb, " to '",
                  Escaped{topic_name.substr(0, 256)}, "'");
    send_error(client, "ERROR: Not allowed to " + std::string{verb} + " to '" +
                           std::string{topic_name} + "'");
}

std::size_t Broker::end_forbidden_subscriptions(Client& client, const Rights& rights) {
    std::vector<std::string> forbidden;
    for (const Subscription& subscription : client.subscriptions()) {
        if (!rights.may_subscribe(subscription.topic->name())) {
            forbidden.emplace_back(subscription.topic->name());
        }
    }
    for (const std::string& filter : forbidden) {
        routing_.unsubscribe(client, filter);
        if (persistence_ != nullptr) {
            persistence_->unsubscribed(client, filter);
        }
        ++stats_.subscriptions_revoked;
        logger_.info("Client '", client.name(), "' unsubscribed from '",
                     Escaped{std::string_view{filter}.substr(0, 256)},
                     "': its rights no longer allow it");
        if (client.connected()) {
            send_error(client, "ERROR: Not allowed to subscribe to '" + filter +
                                   "' any more: unsubscribed");
        }
    }
    return forbidden.size();
}

void Broker::enable_accounts(AccountTable table, bool allow_anonymous) {
    accounts_ = std::make_unique<Accounts>(std::move(table), allow_anonymous);
    admission_.attach_accounts(accounts_.get());
    apply_accounts();
}

Broker::AccountsChange Broker::replace_accounts(AccountTable table) {
    accounts_->replace(std::move(table));
    return apply_accounts();
}

// A connected client keeps the login it made: a user gone from the file, a name that became
// a user's without logging in as it, or an anonymous client no longer allowed, goes. A lost
// client is judged by its name: whoever restores it must log in as that name.
const Rights* Broker::rights_after_reload(Client& client, std::string& why_not) {
    const UserAccount* const user = accounts_->user(client.name());
    Credentials* const credentials = client.credentials_.get();
    const bool logged_in = credentials != nullptr && credentials->rights != nullptr;
    if (client.connected() && logged_in != (user != nullptr)) {
        why_not = logged_in ? "its user is no longer in the users file"
                            : "its name is a user's now, and it did not log in as that user";
        return nullptr;
    }
    const Rights* const rights = accounts_->rights_for_name(client.name());
    if (rights == nullptr) {
        why_not = "anonymous clients are not allowed any more";
        return nullptr;
    }
    if (logged_in) {
        // A lost user's client gone from the file is anonymous now: whoever restores it
        // gets the anonymous rights.
        credentials->rights = user != nullptr ? user->rights : nullptr;
    }
    return rights;
}

Broker::AccountsChange Broker::apply_accounts() {
    AccountsChange change;
    std::vector<Client*> clients;
    lifecycle_.for_each_client(
        [&](const Client& client) { clients.push_back(lifecycle_.find(client.name())); });
    for (Client* client : clients) {
        std::string why_not;
        const Rights* const rights = rights_after_reload(*client, why_not);
        if (rights == nullptr) {
            if (client->connected()) {
                effects_.close.push_back(
                    {client->connection(), why_not, std::string{kNotAuthorized} + ": " + why_not});
            }
            logger_.info("Client '", client->name(), "' removed: ", why_not);
            lifecycle_.remove(*client, why_not);
            ++change.clients_removed;
            continue;
        }
        change.subscriptions_ended += end_forbidden_subscriptions(*client, *rights);
    }
    return change;
}

const std::string* Broker::password_hash_of(std::string_view name) const {
    const UserAccount* const user = accounts_ != nullptr ? accounts_->user(name) : nullptr;
    return user != nullptr ? &user->password_hash : nullptr;
}

std::string Broker::password_checked(std::string_view name, std::string_view password_hash,
                                     std::string_view password, bool right,
                                     const SourceAddress& source, TimePoint now) {
    if (accounts_ == nullptr) {
        return std::string{kNotAuthorized};
    }
    if (right) {
        accounts_->remember_right_password(name, password_hash, password);
        return {};
    }
    return admission_.wrong_password(source, name, now);
}

bool Broker::evict_client(std::string_view name, std::string_view why) {
    Client* const client = lifecycle_.find(name);
    if (client == nullptr) {
        return false;
    }
    if (client->connected()) {
        effects_.close.push_back({client->connection(), std::string{why}});
    }
    lifecycle_.remove(*client, why);
    return true;
}

void Broker::attach_cluster(ClusterLink* cluster) {
    cluster_ = cluster;
    routing_.attach_cluster(cluster);
    lifecycle_.attach_cluster(cluster);
}

void Broker::attach_persistence(Persistence* persistence) {
    persistence_ = persistence;
    lifecycle_.attach_persistence(persistence);
    accounting_.attach_persistence(persistence);
}

void Broker::take_effects(Effects& out) {
    out.clear();
    std::swap(out, effects_);
    if (out.arm_expiry) {
        lifecycle_.expiry_promised(*out.arm_expiry);
    }
}

std::string Broker::check_consistency() const {
    std::string broken = lifecycle_.check_consistency();
    if (broken.empty()) {
        broken = routing_.check_consistency();
    }
    std::size_t held = 0;
    std::size_t lost_held = 0;
    std::size_t lost_holders = 0;
    std::size_t control = 0;
    // The first broken invariant found is the one reported.
    const auto report = [&](std::string what) {
        if (broken.empty()) {
            broken = std::move(what);
        }
    };
    lifecycle_.for_each_client([&](const Client& client) {
        held += client.held_bytes();
        if (client.state() == ClientState::lost) {
            lost_held += client.held_bytes();
            lost_holders += client.outbound().message_bytes() > 0 ? 1 : 0;
            if ((client.outbound().message_bytes() > 0) != client.lost_record()->holds_bytes) {
                report("lost client '" + client.name() + "' is listed as a holder wrongly");
            }
        }
        for (std::size_t i = 0; i < client.subscriptions().size(); ++i) {
            const Subscription& s = client.subscriptions()[i];
            if (s.slot >= s.topic->subscribers.size() ||
                s.topic->subscribers[s.slot].client != &client ||
                s.topic->subscribers[s.slot].subscription != i) {
                report("subscription " + std::to_string(i) + " of '" + client.name() +
                       "' and its topic disagree");
            }
        }
        control += client.held_bytes() - client.held_message_bytes();
        if (config_.max_queue_bytes != 0 && client.held_message_bytes() > config_.max_queue_bytes) {
            report("client '" + client.name() + "' holds more than its bound");
        }
    });
    if (broken.empty()) {
        broken = accounting_.check_consistency(held, lost_held, lost_holders);
    }
    // Control frames are never dropped, so only messages are bounded by the cap.
    if (broken.empty() && config_.max_total_queue_bytes != 0 &&
        held - control > config_.max_total_queue_bytes) {
        broken = "the clients hold more message bytes than the global cap";
    }
    return broken;
}

}  // namespace pubsubx
