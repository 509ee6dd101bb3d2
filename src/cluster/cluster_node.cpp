#include "cluster_node.hpp"

#include <asio/post.hpp>
#include <random>

#include "envelope.hpp"
#include "pubsubx/protocol.hpp"
#include "subjects.hpp"

namespace pubsubx::cluster {

namespace {

constexpr std::string_view kRegistryUnavailable{
    "ERROR: The cluster's name registry cannot be reached; retry in a moment"};
constexpr std::string_view kNameMoving{
    "ERROR: Name is moving to another node of the cluster; retry in a moment"};
constexpr std::size_t kMaxCachedSubjects = 65'536;
constexpr int kMaxClaimAttempts = 4;
constexpr std::size_t kMaxBatchBytes = 64 * 1024;
constexpr std::size_t kMaxTrackedSubjects = 65'536;

// Interest records (kind 'I'): the announcing node, flags, then one field per change.
constexpr char kInterestRecord = 'I';
constexpr std::uint64_t kReplacesAll = 1;  // the fields are the node's whole set
constexpr std::uint64_t kAsksForAll = 2;   // every other node answers with its whole set

// Hand-over records.
constexpr char kTakeRequest = 'T';
constexpr char kReadyRequest = 'R';
constexpr char kAccepted = 'A';  // with the client's subscriptions
constexpr char kUnknown = 'U';   // no such client here (the name is stale)
constexpr char kRefused = 'E';   // with the error frame for the CONNECT
constexpr char kState = 'S';     // the client's state
constexpr char kGone = 'G';      // the name moved, but the client ended meanwhile
constexpr char kPart = 'P';      // a part of a state too large for one NATS message
constexpr char kFailed = 'F';    // the hand-over failed, with the error frame for the CONNECT

std::uint64_t random_incarnation() {
    std::random_device device;
    std::uint64_t value = 0;
    while (value == 0) {
        value = (std::uint64_t{device()} << 32) | device();
    }
    return value;
}

std::string_view as_view(const SourceAddress& source) {
    return {reinterpret_cast<const char*>(source.bytes.data()), source.bytes.size()};
}

SourceAddress source_from(std::string_view bytes) {
    SourceAddress source;
    if (bytes.size() == source.bytes.size()) {
        std::copy(bytes.begin(), bytes.end(), source.bytes.begin());
    }
    return source;
}

}  // namespace

ClusterNode::ClusterNode(asio::io_context& io, Broker& broker, Logger& logger,
                         ClusterSettings settings, std::function<void()> apply_effects)
    : io_(io),
      broker_(broker),
      logger_(logger),
      settings_(std::move(settings)),
      apply_effects_(std::move(apply_effects)),
      prefix_(cluster_prefix(settings_.cluster)),
      incarnation_(random_incarnation()),
      link_(io, *this),
      registry_(settings_.cluster, settings_.node, settings_.lease),
      heartbeat_timer_(io),
      liveness_timer_(io),
      remote_(prefix_),
      answer_prefix_(node_subject(settings_.node, "a")) {}

ClusterNode::~ClusterNode() {
    stop();
}

template <typename Result>
void ClusterNode::on_worker(std::function<Result()> task, std::function<void(Result)> then) {
    run_on(worker_, std::move(task), std::move(then));
}

template <typename Result>
void ClusterNode::run_on(Worker& worker, std::function<Result()> task,
                         std::function<void(Result)> then) {
    worker.post([this, task = std::move(task), then = std::move(then)]() mutable {
        Result result = task();
        asio::post(io_, [this, then = std::move(then), result = std::move(result)]() mutable {
            if (!stopping_) {
                then(std::move(result));
            }
        });
    });
}

std::string ClusterNode::node_subject(std::string_view node, std::string_view what) const {
    return prefix_ + "n." + escaped(node) + "." + std::string{what};
}

// ---- Joining -------------------------------------------------------------------------------

bool ClusterNode::start(std::string& error) {
    if (!link_.connect(settings_.servers, "pubsubx " + settings_.node, error)) {
        return false;
    }
    link_.subscribe(prefix_ + "interest", NatsLink::Channel::control);
    link_.subscribe(node_subject(settings_.node, "*"), NatsLink::Channel::control);
    broker_.attach_cluster(this);
    // The clients the store brought back may have been taken by other nodes meanwhile: until
    // the registry says otherwise, their names are not this node's to give.
    broker_.for_each_client([&](const Client& client) { unverified_.insert(client.name()); });
    if (!link_.connected()) {
        logger_.error("Cluster: NATS does not answer yet; serving local clients and retrying");
        return true;
    }
    // At start the event loop is not running yet: join in place, so that a node name in use
    // stops the start.
    if (!registry_.open(link_.connection(), error) ||
        !registry_.heartbeat(incarnation_, true, error)) {
        return false;
    }
    on_joined();
    return true;
}

void ClusterNode::join() {
    if (joining_) {
        return;  // the connection came back twice: one join is enough
    }
    joining_ = true;
    on_worker<std::string>(
        [this] {
            std::string error;
            if (!registry_.open(link_.connection(), error) ||
                !registry_.heartbeat(incarnation_, true, error)) {
                return error.empty() ? std::string{"unknown error"} : error;
            }
            return std::string{};
        },
        [this](std::string error) {
            joining_ = false;
            if (!error.empty()) {
                logger_.error("Cluster: cannot join yet (", error, "); retrying");
                heartbeat_timer_.expires_after(settings_.lease / 3);
                heartbeat_timer_.async_wait([this](const std::error_code& failed) {
                    if (!failed && !stopping_ && link_.connected() && !joined_once_) {
                        join();
                    }
                });
                return;
            }
            on_joined();
        });
}

void ClusterNode::on_joined() {
    registry_ready_ = true;
    lease_refreshed_at_ = Clock::now();  // the join's own refresh
    joined_once_ = true;
    announce_all(kReplacesAll | kAsksForAll);
    start_heartbeat();
    check_remote_nodes();
    verify_all_names();
    logger_.info("Cluster: node '", settings_.node, "' joined cluster '", settings_.cluster,
                 "' (lease ", seconds_text(settings_.lease), ")");
}

void ClusterNode::start_heartbeat() {
    heartbeat_timer_.expires_after(settings_.lease / 3);
    heartbeat_timer_.async_wait([this](const std::error_code& error) {
        if (error || stopping_) {
            return;
        }
        const TimePoint started = Clock::now();
        if (lease_at_risk(started)) {
            lease_in_doubt_ = true;
        }
        // A thread of its own: no request or registry call can hold the lease up.
        run_on<std::string>(
            lease_worker_,
            [this] {
                std::string failure;
                registry_.heartbeat(incarnation_, false, failure);
                return failure;
            },
            [this, started](std::string failure) {
                if (!failure.empty()) {
                    if (link_.connected()) {
                        logger_.error("Cluster: cannot refresh this node's lease: ", failure);
                    }
                    return;
                }
                lease_refreshed(started);
            });
        start_heartbeat();
    });
}

// Half a lease without a refresh (the node was paused, or away from NATS): the others may
// have counted it gone and taken its names.
bool ClusterNode::lease_at_risk(TimePoint now) const {
    return now - lease_refreshed_at_ >= settings_.lease / 2;
}

// After a doubt, the node checks every name it holds and tells everyone its interest again
// (a node that counted it gone has forgotten it).
void ClusterNode::lease_refreshed(TimePoint started) {
    lease_refreshed_at_before_ = lease_refreshed_at_;
    lease_refreshed_at_ = std::max(lease_refreshed_at_, started);
    if (!lease_in_doubt_ || lease_at_risk(Clock::now())) {
        return;
    }
    lease_in_doubt_ = false;
    if (Clock::now() - lease_refreshed_at_before_ >= settings_.lease) {
        // The others counted this node gone and stopped sending to it: what they published
        // meanwhile for its subscribers is lost, and no count of theirs shows it.
        ++figures_.lease_lapses;
        logger_.error("Cluster: this node's lease lapsed (no refresh for ",
                      seconds_text(Clock::now() - lease_refreshed_at_before_),
                      "): messages other nodes published meanwhile for its subscribers are lost "
                      "uncounted");
    }
    logger_.info(
        "Cluster: this node's lease is refreshed after a gap: checking its clients' "
        "names and announcing its interest again");
    verify_all_names();
    announce_all(kReplacesAll | kAsksForAll);
}

// Nodes whose lease ended are forgotten with their interest; hand-overs that were never
// finished end.
void ClusterNode::check_remote_nodes() {
    liveness_timer_.expires_after(settings_.lease);
    liveness_timer_.async_wait([this](const std::error_code& error) {
        if (error || stopping_) {
            return;
        }
        expire_outgoing();
        for (const auto& [incarnation, node] : remote_names_) {
            on_worker<bool>([this, node = node] { return registry_.node_alive(node); },
                            [this, incarnation = incarnation](bool alive) {
                                const auto found = remote_names_.find(incarnation);
                                if (alive || found == remote_names_.end()) {
                                    return;
                                }
                                logger_.info("Cluster: node '", found->second,
                                             "' is gone (its lease ended)");
                                remote_.forget(incarnation);
                                last_received_.erase(incarnation);
                                last_slot_ = nullptr;
                                remote_names_.erase(found);
                            });
        }
        check_remote_nodes();
    });
}

// Clients the store brought back: this node keeps only the names nobody took meanwhile.
void ClusterNode::reclaim_names(std::vector<std::string> names) {
    for (std::string& name : names) {
        on_worker<std::optional<std::uint64_t>>(
            [this, name]() -> std::optional<std::uint64_t> {
                const std::optional<NameEntry> entry = registry_.lookup(name);
                if (!entry) {
                    return std::nullopt;
                }
                if (!entry->owner.empty() && entry->owner != settings_.node) {
                    return 0;
                }
                return registry_.take(name, entry->revision);
            },
            [this, name](std::optional<std::uint64_t> revision) {
                if (!revision) {
                    logger_.error("Cluster: could not re-claim the name of client '", name,
                                  "' (registry unreachable); it stays here");
                    return;
                }
                unverified_.erase(name);
                if (*revision == 0) {
                    evict(name);
                    return;
                }
                owned_[name] = *revision;
            });
    }
}

// The registry says another node holds the name: this node's client of that name goes.
void ClusterNode::evict(const std::string& name) {
    owned_.erase(name);
    unverified_.erase(name);
    if (broker_.evict_client(name, "another node took its name meanwhile")) {
        apply_effects_();
    }
}

// Every client here is checked against the registry again before it is restored here, and
// the names others took meanwhile are given up.
void ClusterNode::verify_all_names() {
    std::vector<std::string> names;
    broker_.for_each_client([&](const Client& client) { names.push_back(client.name()); });
    for (const std::string& name : names) {
        unverified_.insert(name);
    }
    if (!names.empty()) {
        reclaim_names(std::move(names));
    }
}

void ClusterNode::stop() {
    if (stopping_) {
        return;
    }
    stopping_ = true;
    heartbeat_timer_.cancel();
    liveness_timer_.cancel();
    // A stop must not wait on NATS: one that does not answer at once is treated as gone.
    if (!link_.answers_within(std::chrono::milliseconds{250})) {
        // Nothing to tell anyone: closing first ends any blocking call the workers are in.
        link_.close();
        worker_.stop();
        lease_worker_.stop();
        broker_.attach_cluster(nullptr);
        return;
    }
    worker_.stop();
    lease_worker_.stop();
    if (joined_once_) {
        local_interest_.clear();
        announcements_.clear();
        announce_all(kReplacesAll);  // an empty set: the others stop sending here at once
        registry_.leave();
    }
    link_.close();
    broker_.attach_cluster(nullptr);
}

const ClusterFigures& ClusterNode::figures() {
    figures_.nodes = remote_names_.size() + 1;
    figures_.nats_subscriptions = link_.subscription_count();
    figures_.connected = link_.connected();
    return figures_;
}

void ClusterNode::on_connection_changed(bool connected) {
    if (stopping_) {
        return;
    }
    if (!connected) {
        ++figures_.disconnects;
        logger_.error("Cluster: lost the NATS connection; serving local clients, reconnecting");
        return;
    }
    logger_.info("Cluster: connected to NATS; ", link_.subscription_count(),
                 " subscription(s) renewed");
    if (!joined_once_) {
        join();
        return;
    }
    // Announcements made while the connection was down may be lost: everyone starts over.
    announce_all(kReplacesAll | kAsksForAll);
}

void ClusterNode::on_dropped(std::uint64_t messages) {
    figures_.dropped_by_nats += messages;
    logger_.error("Cluster: ", messages,
                  " message(s) from other nodes dropped: this node did not read them in time");
}

// ---- Fan-out -------------------------------------------------------------------------------

void ClusterNode::interest_added(std::string_view topic_or_filter) {
    add_interest(std::string{topic_or_filter});
}

void ClusterNode::interest_removed(std::string_view topic_or_filter) {
    remove_interest(std::string{topic_or_filter});
}

void ClusterNode::add_interest(const std::string& topic_or_filter) {
    if (local_interest_[topic_or_filter]++ > 0) {
        return;
    }
    for (const std::string& subject : interest_subjects(prefix_, topic_or_filter)) {
        link_.subscribe(subject, NatsLink::Channel::data);
    }
    announce('+', topic_or_filter);
}

void ClusterNode::remove_interest(const std::string& topic_or_filter) {
    const auto found = local_interest_.find(topic_or_filter);
    if (found == local_interest_.end() || --found->second > 0) {
        return;
    }
    local_interest_.erase(found);
    for (const std::string& subject : interest_subjects(prefix_, topic_or_filter)) {
        link_.unsubscribe(subject);
    }
    // What is published meanwhile does not come here: the counts start again when it does.
    expected_.clear();
    announce('-', topic_or_filter);
}

// Changes go out together once the event loop is done with what it is doing.
void ClusterNode::announce(char op, const std::string& topic_or_filter) {
    announcements_.emplace_back(op, topic_or_filter);
    if (!announce_posted_) {
        announce_posted_ = true;
        asio::post(io_, [this] { send_announcements(); });
    }
}

void ClusterNode::send_announcements() {
    announce_posted_ = false;
    if (announcements_.empty() || stopping_) {
        announcements_.clear();
        return;
    }
    RecordWriter record{kInterestRecord};
    record.number(incarnation_).field(settings_.node).number(0);
    std::string change;
    for (const auto& [op, topic_or_filter] : announcements_) {
        change.assign(1, op).append(topic_or_filter);
        record.field(change);
    }
    announcements_.clear();
    link_.publish(prefix_ + "interest", record.bytes());
}

void ClusterNode::announce_all(std::uint64_t flags) {
    send_announcements();
    RecordWriter record{kInterestRecord};
    record.number(incarnation_).field(settings_.node).number(flags);
    std::string change;
    for (const auto& [topic_or_filter, users] : local_interest_) {
        change.assign(1, '+').append(topic_or_filter);
        record.field(change);
    }
    link_.publish(prefix_ + "interest", record.bytes());
}

void ClusterNode::on_interest_record(std::string_view payload) {
    RecordReader record{payload};
    const std::uint64_t origin = record.number();
    const std::string node{record.field()};
    const std::uint64_t flags = record.number();
    if (record.failed() || origin == incarnation_) {
        return;
    }
    // A node that restarted announces under a new incarnation: the old one is gone.
    for (auto it = remote_names_.begin(); it != remote_names_.end();) {
        if (it->second == node && it->first != origin) {
            remote_.forget(it->first);
            last_received_.erase(it->first);
            last_slot_ = nullptr;
            it = remote_names_.erase(it);
        } else {
            ++it;
        }
    }
    if (remote_names_.emplace(origin, node).second) {
        logger_.info("Cluster: node '", node, "' is here");
        // A node heard from mid-way (this one had counted it gone, say): ask for everything.
        if ((flags & kReplacesAll) == 0) {
            announce_all(kReplacesAll | kAsksForAll);
        }
    }
    if ((flags & kReplacesAll) != 0) {
        remote_.forget(origin);
    }
    while (!record.at_end()) {
        const std::string_view change = record.field();
        if (record.failed() || change.empty()) {
            break;
        }
        if (change.front() == '+') {
            remote_.add(origin, change.substr(1));
        } else if (change.front() == '-') {
            remote_.remove(origin, change.substr(1));
        }
    }
    if ((flags & kAsksForAll) != 0) {
        announce_all(kReplacesAll);
    }
}

const std::string& ClusterNode::subject_of(std::string_view topic) {
    const auto found = subjects_.find(topic);
    if (found != subjects_.end()) {
        return found->second;
    }
    if (subjects_.size() >= kMaxCachedSubjects) {
        subjects_.clear();
    }
    return subjects_.emplace(std::string{topic}, topic_subject(prefix_, topic)).first->second;
}

void ClusterNode::published(std::string_view topic, std::string_view data) {
    ++sequence_;
    if (!incoming_.empty()) {
        buffer_for_handovers(incarnation_, sequence_, topic, data);
    }
    const std::string* const subject = remote_.wanted(topic);
    if (subject == nullptr) {
        return;
    }
    const std::string& to = subject->empty() ? subject_of(topic) : *subject;
    // A batch numbers its messages one after the other, so a publish that did not go to NATS
    // ends it; so does another subject. A large message goes alone: a batch must stay within
    // what NATS takes in one message.
    if (!batch_.empty() && (sequence_ != batch_next_sequence_ || to != batch_subject_ ||
                            batch_.size() + topic.size() + data.size() > kMaxBatchBytes)) {
        send_batch();
    }
    if (batch_.empty()) {
        batch_subject_ = to;
        if (sent_per_subject_.size() >= kMaxTrackedSubjects) {
            sent_per_subject_.clear();  // receivers see a count that went back: no gap
        }
        begin_batch(batch_, incarnation_, sequence_, sent_per_subject_[to]);
        if (!batch_posted_) {
            batch_posted_ = true;
            asio::post(io_, [this] {
                batch_posted_ = false;
                send_batch();
            });
        }
    }
    add_to_batch(batch_, topic, data);
    batch_next_sequence_ = sequence_ + 1;
}

// The batch goes when the event loop is done with what it is doing (the rest of a read, say),
// when the next message goes to another subject, or when it is large.
void ClusterNode::send_batch() {
    if (batch_.empty()) {
        return;
    }
    const std::size_t messages = batch_size(batch_);
    if (link_.publish(batch_subject_, batch_)) {
        figures_.forwarded += messages;
        sent_per_subject_[batch_subject_] += messages;
    } else {
        const bool first = figures_.not_forwarded == 0;
        figures_.not_forwarded += messages;
        if (first || batch_.size() > link_.max_payload()) {
            logger_.error("Cluster: ", messages, " message(s) of ", batch_.size(),
                          " bytes could not go to other nodes (",
                          batch_.size() > link_.max_payload()
                              ? "larger than NATS's max_payload of " +
                                    std::to_string(link_.max_payload()) + " bytes"
                              : std::string{"NATS did not take them: disconnected?"},
                          "); counted in $SYS/broker/cluster/messages/not_forwarded");
        }
    }
    batch_.clear();
    if (batch_.capacity() > 4 * kMaxBatchBytes) {
        std::string{}.swap(batch_);
    }
}

void ClusterNode::on_inbound(const NatsLink::Inbound& inbound) {
    if (stopping_) {
        return;
    }
    if (inbound.channel == NatsLink::Channel::data) {
        on_batch(inbound.payload);
    } else {
        on_control(inbound.subject, inbound.reply, inbound.payload);
    }
}

void ClusterNode::on_inbound_done() {
    batch_now_.reset();
    apply_effects_();
}

void ClusterNode::on_batch(std::string_view payload) {
    if (!batch_now_) {
        batch_now_ = Clock::now();  // one clock read per batch of messages
    }
    const std::optional<BatchHeader> header = batch_header(payload);
    // NATS delivers a message once per matching subscription (`a/b` and `a/#` held here): the
    // copies come one after the other, and are not news.
    if (header && header->origin == last_batch_.origin &&
        header->first_sequence == last_batch_.first_sequence) {
        return;
    }
    if (header) {
        last_batch_ = *header;
    }
    bool first = true;
    const bool whole = for_each_message(payload, [&](const Envelope& envelope) {
        if (first) {
            first = false;
            count_gap(envelope.origin, envelope.topic, header->sent_before, header->count);
        }
        on_message(envelope);
    });
    if (!whole) {
        ++figures_.damaged;
        logger_.error("Cluster: a damaged batch of messages from another node was dropped");
    }
}

// Each batch says how many messages its origin had sent to its subject before: more than this
// node received means some never arrived (a NATS restart, a slow reconnect).
void ClusterNode::count_gap(std::uint64_t origin, std::string_view topic, std::uint64_t sent_before,
                            std::uint64_t count) {
    if (origin == incarnation_) {
        return;
    }
    std::string key(reinterpret_cast<const char*>(&origin), sizeof origin);
    key.append(topic);
    if (expected_.size() >= kMaxTrackedSubjects) {
        expected_.clear();
    }
    const auto [entry, first] = expected_.try_emplace(std::move(key), sent_before + count);
    if (first) {
        return;
    }
    std::uint64_t& expected = entry->second;
    if (sent_before > expected) {
        const std::uint64_t lost = sent_before - expected;
        figures_.lost += lost;
        const auto node = remote_names_.find(origin);
        logger_.error("Cluster: ", lost, " message(s) from node '",
                      node == remote_names_.end() ? std::string{"?"} : node->second, "' to topic '",
                      Escaped{topic.substr(0, 256)}, "' never arrived (", figures_.lost,
                      " in all)");
    }
    expected = std::max(expected, sent_before + count);
}

void ClusterNode::on_message(const Envelope& message) {
    const Envelope* const envelope = &message;
    if (envelope->origin == incarnation_) {
        return;
    }
    // What a node sends was checked where it was published; what reaches this one through
    // NATS is checked again, so that nothing else can make a client read a frame of its own.
    if (publish_ban(envelope->topic) != PublishBan::none || !is_valid_topic(envelope->topic) ||
        find_delimiter(envelope->data) != std::string_view::npos) [[unlikely]] {
        ++figures_.damaged;
        return;
    }
    if (envelope->origin != last_origin_ || last_slot_ == nullptr) {
        last_origin_ = envelope->origin;
        last_slot_ = &last_received_[envelope->origin];
    }
    std::uint64_t& last = *last_slot_;
    if (envelope->sequence <= last) {
        // Each node's messages reach this one in order: an older number was delivered already.
        if (++figures_.duplicates == 1 || (figures_.duplicates & (figures_.duplicates - 1)) == 0) {
            logger_.error("Cluster: a message from another node arrived twice (",
                          figures_.duplicates, " so far); delivered once");
        }
        return;
    }
    last = envelope->sequence;
    ++figures_.received;
    if (!incoming_.empty()) {
        buffer_for_handovers(envelope->origin, envelope->sequence, envelope->topic, envelope->data);
    }
    broker_.publish_from_cluster(envelope->topic, envelope->data, *batch_now_);
}

void ClusterNode::buffer_for_handovers(std::uint64_t origin, std::uint64_t sequence,
                                       std::string_view topic, std::string_view data) {
    for (auto& [name, handover] : incoming_) {
        for (const std::string& filter : handover.filters) {
            if (filter_matches(filter, topic)) {
                std::string frame;
                append_message_frame(frame, topic, data);
                handover.buffered.push_back({origin, sequence, std::move(frame)});
                break;
            }
        }
    }
}

void ClusterNode::on_control(std::string_view subject, std::string_view reply,
                             std::string_view payload) {
    if (subject == prefix_ + "interest") {
        on_interest_record(payload);
    } else if (subject.starts_with(answer_prefix_)) {
        on_take_reply(subject.substr(answer_prefix_.size()), payload);
    } else if (!payload.empty() && payload.front() == kTakeRequest) {
        on_take_request(reply, payload);
    } else if (!payload.empty() && payload.front() == kReadyRequest) {
        on_ready_request(payload);
    } else if (!payload.empty() && (payload.front() == kState || payload.front() == kGone ||
                                    payload.front() == kFailed)) {
        on_state_record(payload);
    } else if (!payload.empty() && payload.front() == kPart) {
        on_state_part(payload);
    }
}

// ---- Names ---------------------------------------------------------------------------------

NameAdmission ClusterNode::admit_name(const Connection& connection, std::string_view name,
                                      bool held_here) {
    const auto grant = grants_.find(&connection);
    if (grant != grants_.end() && grant->second == name) {
        return NameAdmission::local;
    }
    if (outgoing_.count(std::string{name}) != 0 || incoming_.count(std::string{name}) != 0) {
        return NameAdmission::moving;
    }
    if (!held_here || unverified_.count(std::string{name}) != 0) {
        return NameAdmission::ask_registry;
    }
    // A client held here, while this node may have lost its lease: restoring it could make a
    // second owner, so the registry decides (and refuses while it cannot be reached).
    if (joined_once_ && lease_at_risk(Clock::now())) {
        lease_in_doubt_ = true;
        return NameAdmission::ask_registry;
    }
    return NameAdmission::local;
}

void ClusterNode::settle_name(const Connection& connection, std::string name, std::string secret,
                              const SourceAddress& source, Done done) {
    ++claiming_[name];
    claim(std::make_shared<NameRequest>(
        NameRequest{&connection, std::move(name), std::move(secret), source, std::move(done)}));
}

void ClusterNode::finish_claim(const std::shared_ptr<NameRequest>& request,
                               std::string_view error_frame) {
    if (error_frame == kRegistryUnavailable) {
        ++figures_.registry_refusals;
    }
    logger_.error("Refused CONNECT '", request->name, "': ", error_frame);
    request->done(error_frame);
    end_claiming(request->name);
}

void ClusterNode::end_claiming(const std::string& name) {
    const auto found = claiming_.find(name);
    if (found != claiming_.end() && --found->second == 0) {
        claiming_.erase(found);
    }
}

void ClusterNode::grant(const std::shared_ptr<NameRequest>& request, std::uint64_t revision) {
    owned_[request->name] = revision;
    unverified_.erase(request->name);
    grants_[request->connection] = request->name;
    request->done({});
    grants_.erase(request->connection);
    end_claiming(request->name);
}

// This node takes the name from `revision` (the last one read), then admits the CONNECT; if
// someone changed the name first, it looks again.
void ClusterNode::take_name(std::shared_ptr<NameRequest> request, std::uint64_t revision) {
    on_worker<std::optional<std::uint64_t>>(
        [this, name = request->name, revision] { return registry_.take(name, revision); },
        [this, request](std::optional<std::uint64_t> taken) {
            if (!taken) {
                finish_claim(request, kRegistryUnavailable);
            } else if (*taken == 0) {
                claim(request);
            } else {
                grant(request, *taken);
            }
        });
}

void ClusterNode::claim(std::shared_ptr<NameRequest> request) {
    if (!registry_ready_ || !link_.connected()) {
        finish_claim(request, kRegistryUnavailable);
        return;
    }
    if (incoming_.count(request->name) != 0 || outgoing_.count(request->name) != 0) {
        finish_claim(request, kNameMoving);
        return;
    }
    if (++request->attempts > kMaxClaimAttempts) {
        finish_claim(request, kNameTaken);  // others keep winning the race for it
        return;
    }
    const std::string name = request->name;
    on_worker<std::optional<NameEntry>>(
        [this, name] { return registry_.lookup(name); },
        [this, request](std::optional<NameEntry> entry) {
            if (!entry) {
                finish_claim(request, kRegistryUnavailable);
                return;
            }
            if (!entry->owner.empty() && entry->owner != settings_.node &&
                broker_.find_client(request->name) != nullptr) {
                evict(request->name);  // held here, but another node took it meanwhile
            }
            if (entry->owner.empty() || entry->owner == settings_.node) {
                take_name(request, entry->revision);
                return;
            }
            ask_owner(request, entry->owner, entry->revision);
        });
}

// The name belongs to another node: it hands the client over, or refuses, or does not hold
// it (a stale entry), or is gone (its lease ended).
void ClusterNode::ask_owner(std::shared_ptr<NameRequest> request, std::string owner,
                            std::uint64_t revision) {
    const std::string payload = RecordWriter{kTakeRequest}
                                    .field(request->name)
                                    .field(request->secret)
                                    .field(as_view(request->source))
                                    .field(settings_.node)
                                    .bytes();
    // The answer comes on this node's own subject (no thread waits for it): a node that does
    // not answer costs a timer, not a blocked worker.
    const std::uint64_t id = ++last_take_id_;
    PendingTake& pending = pending_takes_[id];
    pending.request = request;
    pending.owner = owner;
    pending.revision = revision;
    pending.timeout = std::make_shared<asio::steady_timer>(io_, settings_.request_timeout);
    pending.timeout->async_wait([this, id](const std::error_code& error) {
        if (!error && !stopping_) {
            on_take_timeout(id);
        }
    });
    link_.publish_with_reply(node_subject(owner, "take"),
                             node_subject(settings_.node, "a" + std::to_string(id)), payload);
}

void ClusterNode::on_take_timeout(std::uint64_t id) {
    const auto found = pending_takes_.find(id);
    if (found == pending_takes_.end()) {
        return;
    }
    PendingTake pending = std::move(found->second);
    pending_takes_.erase(found);
    on_worker<bool>([this, owner = pending.owner] { return registry_.node_alive(owner); },
                    [this, pending](bool alive) {
                        if (alive) {
                            finish_claim(pending.request,
                                         "ERROR: Name is held by node '" + pending.owner +
                                             "', which does not answer; retry later");
                            return;
                        }
                        logger_.info("Cluster: taking name '", pending.request->name,
                                     "' from node '", pending.owner, "', whose lease ended");
                        on_take_answer(pending.request, pending.owner, std::string(1, kUnknown),
                                       pending.revision);
                    });
}

void ClusterNode::on_take_reply(std::string_view id_text, std::string_view payload) {
    std::uint64_t id = 0;
    for (const char digit : id_text) {
        id = id * 10 + static_cast<std::uint64_t>(digit - '0');
    }
    const auto found = pending_takes_.find(id);
    if (found == pending_takes_.end()) {
        return;  // timed out already
    }
    if (payload.empty()) {
        // NATS's "no responders": nothing listens on that node's subject (it is gone, its lease
        // may still run).
        found->second.timeout->cancel();
        on_take_timeout(id);
        return;
    }
    PendingTake pending = std::move(found->second);
    pending_takes_.erase(found);
    pending.timeout->cancel();
    on_take_answer(pending.request, pending.owner, std::string{payload}, pending.revision);
}

void ClusterNode::on_take_answer(std::shared_ptr<NameRequest> request, const std::string& owner,
                                 std::string answer, std::uint64_t revision) {
    RecordReader record{answer};
    switch (record.kind()) {
        case kUnknown:
            take_name(request, revision);
            return;
        case kRefused:
            finish_claim(request, std::string{record.field()});
            return;
        case kAccepted:
            break;
        default:
            finish_claim(request, kRegistryUnavailable);
            return;
    }
    // Subscribe to the client's filters before asking for its queue: from here on, what other
    // nodes publish reaches this node too, and is buffered until the queue arrives.
    IncomingHandover& handover = incoming_[request->name];
    handover.filters.clear();
    for (std::uint64_t count = record.number(); count > 0 && !record.failed(); --count) {
        handover.filters.emplace_back(record.field());
    }
    for (const std::string& filter : handover.filters) {
        add_interest(filter);
    }
    send_announcements();
    handover.request = request;
    handover.owner = owner;
    handover.timeout = std::make_shared<asio::steady_timer>(
        io_, settings_.request_timeout + settings_.handover_window);
    handover.timeout->async_wait([this, request](const std::error_code& error) {
        const auto found = incoming_.find(request->name);
        if (error || stopping_ || found == incoming_.end() || found->second.request != request) {
            return;
        }
        const std::string owner = found->second.owner;
        end_incoming(request->name);
        finish_claim(request,
                     "ERROR: Node '" + owner + "' did not hand the client over in time; retry");
    });
    // "Ready" follows the new subscriptions on this node's one connection, so NATS has them
    // before the old owner lets go; its answer comes on this node's own subject, behind every
    // message NATS routed here before it (one delivery thread keeps that order).
    link_.publish(node_subject(owner, "ready"),
                  RecordWriter{kReadyRequest}.field(request->name).field(settings_.node).bytes());
}

void ClusterNode::on_state_record(std::string_view payload) {
    RecordReader record{payload};
    const std::string name{record.field()};
    const auto found = incoming_.find(name);
    if (record.failed() || found == incoming_.end() || !found->second.request) {
        logger_.error("Cluster: the state of client '", name,
                      "' came after its hand-over had timed out; it is lost");
        return;
    }
    on_state_answer(found->second.request, found->second.owner, record);
}

void ClusterNode::on_state_answer(std::shared_ptr<NameRequest> request, std::string owner,
                                  RecordReader& record) {
    const char kind = record.kind();
    if (kind == kGone) {
        const std::uint64_t revision = record.number();
        end_incoming(request->name);
        grant(request, revision);  // the name is ours; the client had ended meanwhile
        return;
    }
    if (kind != kState) {
        const std::string error{record.field()};
        end_incoming(request->name);
        finish_claim(request, error.empty() ? std::string{kRegistryUnavailable} : error);
        return;
    }
    const std::uint64_t revision = record.number();
    RecoveredClient state;
    state.name = request->name;
    const std::string_view secret = record.field();
    if (!secret.empty()) {
        state.secret = SecretDigest::from_bytes(secret);
    }
    for (std::uint64_t count = record.number(); count > 0 && !record.failed(); --count) {
        state.subscriptions.emplace_back(record.field());
    }
    state.frames = record.field();
    std::unordered_map<std::uint64_t, std::uint64_t> received_there;
    for (std::uint64_t count = record.number(); count > 0 && !record.failed(); --count) {
        const std::uint64_t origin = record.number();
        received_there[origin] = record.number();
    }
    if (record.failed()) {
        end_incoming(request->name);
        finish_claim(request,
                     "ERROR: The client's state from node '" + owner + "' was damaged; retry");
        return;
    }
    // Messages this node buffered that the old owner had not received go after its queue.
    std::size_t kept = 0;
    for (const auto& buffered : incoming_[request->name].buffered) {
        const auto there = received_there.find(buffered.origin);
        if (there == received_there.end() || buffered.sequence > there->second) {
            state.frames += buffered.frame;
            ++kept;
        }
    }
    broker_.adopt(state, Clock::now());
    end_incoming(request->name);
    ++figures_.handed_in;
    logger_.info("Cluster: client '", request->name, "' handed over from node '", owner, "' with ",
                 count_frames(state.frames), " queued message(s) (", kept,
                 " of them arrived here meanwhile)");
    apply_effects_();
    grant(request, revision);
}

void ClusterNode::end_incoming(const std::string& name) {
    const auto found = incoming_.find(name);
    if (found == incoming_.end()) {
        return;
    }
    const std::vector<std::string> filters = std::move(found->second.filters);
    if (found->second.timeout) {
        found->second.timeout->cancel();
    }
    incoming_.erase(found);
    for (const std::string& filter : filters) {
        remove_interest(filter);
    }
}

// The old owner's side. First: may the CONNECT have the client? If so, the subscriptions go
// back, and the client is held (CONNECTs here wait) until the new owner is ready.
void ClusterNode::on_take_request(std::string_view reply, std::string_view payload) {
    RecordReader record{payload};
    const std::string name{record.field()};
    const std::string secret{record.field()};
    const SourceAddress source = source_from(record.field());
    const std::string from{record.field()};
    if (record.failed() || reply.empty()) {
        return;
    }
    const std::string reply_subject{reply};
    if (outgoing_.count(name) != 0 || incoming_.count(name) != 0) {
        link_.publish(reply_subject, RecordWriter{kRefused}.field(kNameMoving).bytes());
        return;
    }
    // This node is claiming the name itself (it may have won it a moment ago, and its client
    // is not admitted yet): the other CONNECT lost the race.
    if (claiming_.count(name) != 0) {
        link_.publish(reply_subject, RecordWriter{kRefused}.field(kNameTaken).bytes());
        return;
    }
    std::string error_frame;
    if (!broker_.may_hand_over(name, secret, source, Clock::now(), error_frame)) {
        if (error_frame.empty()) {
            owned_.erase(name);  // a stale claim: let the other node have the name
            link_.publish(reply_subject, std::string(1, kUnknown));
        } else {
            link_.publish(reply_subject, RecordWriter{kRefused}.field(error_frame).bytes());
        }
        apply_effects_();
        return;
    }
    const Client* const client = broker_.find_client(name);
    RecordWriter answer{kAccepted};
    answer.number(client->subscriptions().size());
    for (const Subscription& subscription : client->subscriptions()) {
        answer.field(subscription.topic->name());
    }
    outgoing_[name] = {from, secret, source,
                       Clock::now() + 2 * settings_.request_timeout + settings_.handover_window};
    link_.publish(reply_subject, answer.bytes());
}

// Second: the new owner has subscribed. After the window (messages on their way here still
// arrive and are queued), the name moves and the state goes.
void ClusterNode::on_ready_request(std::string_view payload) {
    RecordReader record{payload};
    const std::string name{record.field()};
    const std::string to{record.field()};
    const auto found = outgoing_.find(name);
    if (record.failed()) {
        return;
    }
    const std::string reply = node_subject(to, "state");
    if (found == outgoing_.end() || found->second.to_node != to) {
        link_.publish(reply, RecordWriter{kFailed}
                                 .field(name)
                                 .field("ERROR: The hand-over from another node timed out; retry")
                                 .bytes());
        return;
    }
    auto timer = std::make_shared<asio::steady_timer>(io_, settings_.handover_window);
    timer->async_wait([this, timer, name, to, reply](const std::error_code&) {
        if (stopping_) {
            return;
        }
        const auto owned = owned_.find(name);
        const std::uint64_t revision = owned == owned_.end() ? 0 : owned->second;
        on_worker<std::optional<std::uint64_t>>(
            [this, name, to, revision]() -> std::optional<std::uint64_t> {
                std::uint64_t last = revision;
                if (last == 0) {
                    // No claim of ours on record: the client ended (and freed the name)
                    // meanwhile. A free name still goes to the new owner, which then starts
                    // the client afresh (kGone).
                    const std::optional<NameEntry> entry = registry_.lookup(name);
                    if (!entry || (!entry->owner.empty() && entry->owner != settings_.node)) {
                        return entry ? std::optional<std::uint64_t>{0} : std::nullopt;
                    }
                    last = entry->revision;
                }
                return registry_.move(name, to, last);
            },
            [this, name, reply](std::optional<std::uint64_t> moved) {
                if (!moved || *moved == 0) {
                    outgoing_.erase(name);
                    link_.publish(reply, RecordWriter{kFailed}
                                             .field(name)
                                             .field(moved ? std::string_view{kNameTaken}
                                                          : kRegistryUnavailable)
                                             .bytes());
                    return;
                }
                hand_over_now(name, reply, *moved);
            });
    });
}

void ClusterNode::hand_over_now(std::string name, std::string reply, std::uint64_t new_revision) {
    outgoing_.erase(name);
    owned_.erase(name);
    handing_over_now_ = name;
    const std::optional<RecoveredClient> state = broker_.hand_over(name, Clock::now());
    handing_over_now_.clear();
    apply_effects_();
    // This node's own messages still batched went to the client's queue here: they must reach
    // the new owner before the state, to be recognised there as received already.
    send_batch();
    if (!state) {
        link_.publish(reply, RecordWriter{kGone}.field(name).number(new_revision).bytes());
        return;
    }
    RecordWriter answer{kState};
    answer.field(name).number(new_revision);
    if (state->secret) {
        const auto bytes = state->secret->bytes();
        answer.field({reinterpret_cast<const char*>(bytes.data()), bytes.size()});
    } else {
        answer.field({});
    }
    answer.number(state->subscriptions.size());
    for (const std::string& subscription : state->subscriptions) {
        answer.field(subscription);
    }
    answer.field(state->frames);
    answer.number(last_received_.size() + 1);
    answer.number(incarnation_).number(sequence_);
    for (const auto& [origin, sequence] : last_received_) {
        answer.number(origin).number(sequence);
    }
    if (send_state(reply, name, answer.bytes())) {
        ++figures_.handed_out;
        logger_.info("Cluster: client '", name, "' handed over to another node with ",
                     count_frames(state->frames), " queued message(s)");
    }
}

// A queue may exceed what NATS takes in one message (max_payload, 1 MiB by default): the
// state goes in parts, which the new owner puts together again.
bool ClusterNode::send_state(const std::string& to, const std::string& name,
                             const std::string& state) {
    const std::size_t part_bytes = std::max<std::size_t>(link_.max_payload() / 2, 4096);
    bool sent = true;
    if (state.size() <= part_bytes) {
        sent = link_.publish(to, state);
    } else {
        const std::size_t parts = (state.size() + part_bytes - 1) / part_bytes;
        for (std::size_t part = 0; part < parts && sent; ++part) {
            sent = link_.publish(
                to, RecordWriter{kPart}
                        .field(name)
                        .number(part)
                        .number(parts)
                        .field(std::string_view{state}.substr(part * part_bytes, part_bytes))
                        .bytes());
        }
    }
    if (!sent) {
        ++figures_.not_forwarded;
        logger_.error("Cluster: the state of client '", name,
                      "' could not be sent to its new node (NATS did not take it); it is lost");
    }
    return sent;
}

void ClusterNode::on_state_part(std::string_view payload) {
    RecordReader record{payload};
    const std::string name{record.field()};
    const std::uint64_t part = record.number();
    const std::uint64_t parts = record.number();
    const std::string_view bytes = record.field();
    const auto found = incoming_.find(name);
    if (record.failed() || found == incoming_.end() || !found->second.request) {
        return;  // on_state_record says so once the whole state would have been there
    }
    IncomingHandover& handover = found->second;
    if (part != handover.parts_received) {
        handover.state_parts.clear();
        handover.parts_received = 0;
        logger_.error("Cluster: a part of client '", name, "''s state is missing");
        return;
    }
    handover.state_parts.append(bytes);
    if (++handover.parts_received == parts) {
        const std::string state = std::move(handover.state_parts);
        on_state_record(state);
    }
}

void ClusterNode::expire_outgoing() {
    const TimePoint now = Clock::now();
    for (auto it = outgoing_.begin(); it != outgoing_.end();) {
        it = it->second.expires <= now ? outgoing_.erase(it) : std::next(it);
    }
}

void ClusterNode::client_removed(const Client& client) {
    if (client.name() == handing_over_now_) {
        return;  // the name moved with it
    }
    const auto owned = owned_.find(client.name());
    if (owned == owned_.end() || stopping_) {
        return;
    }
    on_worker<bool>([this, name = client.name(),
                     revision = owned->second] { return registry_.release(name, revision); },
                    [](bool) {});
    owned_.erase(owned);
}

}  // namespace pubsubx::cluster
