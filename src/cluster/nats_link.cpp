#include "nats_link.hpp"

#include <asio/post.hpp>
#include <cstring>
#include <utility>

namespace pubsubx::cluster {

namespace {

// What waits for the event loop, for all subscriptions together. cnats's own per-subscription
// limits stay unreached: its delivery thread hands each message here at once.
constexpr std::size_t kMaxInboundBytes = 64 << 20;
constexpr int kMaxPendingBytes = 64 << 20;

void append_sized(std::string& out, const char* bytes, std::size_t size) {
    const auto length = static_cast<std::uint32_t>(size);
    out.append(reinterpret_cast<const char*>(&length), sizeof length);
    out.append(bytes, size);
}

std::string_view take_sized(std::string_view& rest) {
    std::uint32_t length = 0;
    std::memcpy(&length, rest.data(), sizeof length);
    const std::string_view value = rest.substr(sizeof length, length);
    rest.remove_prefix(sizeof length + length);
    return value;
}

}  // namespace

std::string nats_error_text(natsStatus status) {
    const char* const last = nats_GetLastError(nullptr);
    return std::string{natsStatus_GetText(status)} +
           (last != nullptr && *last != '\0' ? std::string{": "} + last : std::string{});
}

void close_nats_library() {
    nats_CloseAndWait(2000);
}

NatsLink::NatsLink(asio::io_context& io, Listener& listener) : io_(io), listener_(listener) {}

NatsLink::~NatsLink() {
    close();
}

bool NatsLink::connect(const std::vector<std::string>& servers, const std::string& name,
                       std::string& error) {
    // One delivery thread for the whole library: see UseGlobalMessageDelivery below.
    nats_SetMessageDeliveryPoolSize(1);
    natsOptions* options = nullptr;
    if (natsOptions_Create(&options) != NATS_OK) {
        error = "cannot create NATS options";
        return false;
    }
    std::vector<const char*> urls;
    for (const std::string& server : servers) {
        urls.push_back(server.c_str());
    }
    natsStatus status = natsOptions_SetServers(options, urls.data(), static_cast<int>(urls.size()));
    if (status == NATS_OK) {
        status = natsOptions_SetName(options, name.c_str());
    }
    // A node never receives its own publishes back: its local subscribers were served already.
    if (status == NATS_OK) {
        status = natsOptions_SetNoEcho(options, true);
    }
    // Reconnect forever, and start even while no NATS server answers yet.
    if (status == NATS_OK) {
        status = natsOptions_SetMaxReconnect(options, -1);
    }
    if (status == NATS_OK) {
        status = natsOptions_SetReconnectWait(options, 250);
    }
    if (status == NATS_OK) {
        status =
            natsOptions_SetRetryOnFailedConnect(options, true, &NatsLink::on_reconnected, this);
    }
    // One delivery thread for all subscriptions: messages reach the event loop in the order the
    // connection received them, whatever subscription they came by (hand-overs rely on it).
    if (status == NATS_OK) {
        status = natsOptions_UseGlobalMessageDelivery(options, true);
    }
    if (status == NATS_OK) {
        status = natsOptions_SetDisconnectedCB(options, &NatsLink::on_disconnected, this);
    }
    if (status == NATS_OK) {
        status = natsOptions_SetReconnectedCB(options, &NatsLink::on_reconnected, this);
    }
    if (status == NATS_OK) {
        status = natsOptions_SetErrorHandler(options, &NatsLink::on_error, this);
    }
    if (status == NATS_OK) {
        status = natsConnection_Connect(&connection_, options);
        if (status == NATS_NOT_YET_CONNECTED) {
            status = NATS_OK;  // retrying in the background
        } else if (status == NATS_OK) {
            connected_ = true;
        }
    }
    natsOptions_Destroy(options);
    if (status != NATS_OK) {
        error = nats_error_text(status);
        connection_ = nullptr;
        return false;
    }
    return true;
}

void NatsLink::close() {
    if (connection_ == nullptr) {
        return;
    }
    for (auto& [subject, subscribed] : subscriptions_) {
        natsSubscription_Unsubscribe(subscribed.subscription);
        natsSubscription_Destroy(subscribed.subscription);
    }
    subscriptions_.clear();
    if (connected()) {
        natsConnection_FlushTimeout(connection_, 1000);
    }
    natsConnection_Close(connection_);
    natsConnection_Destroy(connection_);
    connection_ = nullptr;
    connected_ = false;
}

void NatsLink::subscribe(const std::string& subject, Channel channel) {
    Subscribed& subscribed = subscriptions_[subject];
    if (subscribed.users++ > 0 || connection_ == nullptr) {
        return;
    }
    Tag* const tag = channel == Channel::data ? &data_tag_ : &control_tag_;
    // While disconnected cnats keeps the subscription and sends it on reconnecting.
    if (natsConnection_Subscribe(&subscribed.subscription, connection_, subject.c_str(),
                                 &NatsLink::on_message, tag) == NATS_OK) {
        // The event loop drains in batches; let cnats hold bursts rather than drop them.
        natsSubscription_SetPendingLimits(subscribed.subscription, 1 << 20, kMaxPendingBytes);
    }
}

void NatsLink::unsubscribe(const std::string& subject) {
    const auto found = subscriptions_.find(subject);
    if (found == subscriptions_.end() || --found->second.users > 0) {
        return;
    }
    if (natsSubscription* const subscription = found->second.subscription) {
        std::int64_t dropped = 0;
        if (natsSubscription_GetDropped(subscription, &dropped) == NATS_OK) {
            dropped_closed_ += static_cast<std::uint64_t>(dropped);
        }
        natsSubscription_Unsubscribe(subscription);
        natsSubscription_Destroy(subscription);
    }
    subscriptions_.erase(found);
}

bool NatsLink::answers_within(std::chrono::milliseconds timeout) const {
    return connection_ != nullptr && connected() &&
           natsConnection_FlushTimeout(connection_, timeout.count()) == NATS_OK;
}

std::size_t NatsLink::max_payload() const {
    const std::int64_t reported =
        connection_ == nullptr ? 0 : natsConnection_GetMaxPayload(connection_);
    return reported > 0 ? static_cast<std::size_t>(reported) : std::size_t{1} << 20;
}

bool NatsLink::publish(const std::string& subject, std::string_view payload) {
    return connection_ != nullptr &&
           natsConnection_Publish(connection_, subject.c_str(), payload.data(),
                                  static_cast<int>(payload.size())) == NATS_OK;
}

bool NatsLink::publish_with_reply(const std::string& subject, const std::string& reply,
                                  std::string_view payload) {
    return connection_ != nullptr &&
           natsConnection_PublishRequest(connection_, subject.c_str(), reply.c_str(),
                                         payload.data(),
                                         static_cast<int>(payload.size())) == NATS_OK;
}

// On cnats's delivery thread.
void NatsLink::on_message(natsConnection*, natsSubscription*, natsMsg* message, void* closure) {
    const Tag& tag = *static_cast<Tag*>(closure);
    tag.link->append_inbound(tag.channel, message);
    natsMsg_Destroy(message);
}

void NatsLink::append_inbound(Channel channel, natsMsg* message) {
    const char* const subject = channel == Channel::control ? natsMsg_GetSubject(message) : "";
    const char* const reply = natsMsg_GetReply(message);
    bool post = false;
    {
        const std::lock_guard lock{inbound_mutex_};
        // The event loop is far behind: past the bound a message is dropped and counted, so
        // that what waits for it is bounded whatever the number of subscriptions.
        if (inbound_.size() >= kMaxInboundBytes) {
            ++dropped_here_;
            if (!drain_posted_) {
                drain_posted_ = true;
                asio::post(io_, [this] { drain_inbound(); });
            }
            return;
        }
        inbound_.push_back(static_cast<char>(channel));
        append_sized(inbound_, subject, std::strlen(subject));
        append_sized(inbound_, reply == nullptr ? "" : reply,
                     reply == nullptr ? 0 : std::strlen(reply));
        append_sized(inbound_, natsMsg_GetData(message),
                     static_cast<std::size_t>(natsMsg_GetDataLength(message)));
        post = !drain_posted_;
        drain_posted_ = true;
    }
    if (post) {
        asio::post(io_, [this] { drain_inbound(); });
    }
}

void NatsLink::drain_inbound() {
    draining_.clear();
    std::uint64_t dropped = 0;
    {
        const std::lock_guard lock{inbound_mutex_};
        std::swap(draining_, inbound_);
        drain_posted_ = false;
        dropped = std::exchange(dropped_here_, 0);
    }
    if (dropped > 0) {
        listener_.on_dropped(dropped);
    }
    std::string_view rest{draining_};
    while (!rest.empty()) {
        Inbound inbound{static_cast<Channel>(rest.front()), {}, {}, {}};
        rest.remove_prefix(1);
        inbound.subject = take_sized(rest);
        inbound.reply = take_sized(rest);
        inbound.payload = take_sized(rest);
        listener_.on_inbound(inbound);
    }
    listener_.on_inbound_done();
    // A burst leaves a large buffer behind: give it back rather than keep it for good.
    if (draining_.capacity() > (4u << 20)) {
        std::string{}.swap(draining_);
    }
}

void NatsLink::on_disconnected(natsConnection*, void* closure) {
    auto* const link = static_cast<NatsLink*>(closure);
    link->connected_ = false;
    asio::post(link->io_, [link] { link->listener_.on_connection_changed(false); });
}

void NatsLink::on_reconnected(natsConnection*, void* closure) {
    auto* const link = static_cast<NatsLink*>(closure);
    link->connected_ = true;
    asio::post(link->io_, [link] { link->listener_.on_connection_changed(true); });
}

void NatsLink::on_error(natsConnection*, natsSubscription*, natsStatus status, void* closure) {
    auto* const link = static_cast<NatsLink*>(closure);
    if (status == NATS_SLOW_CONSUMER) {
        asio::post(link->io_, [link] { link->count_dropped(); });
    }
}

void NatsLink::count_dropped() {
    std::uint64_t dropped = dropped_closed_;
    for (const auto& [subject, subscribed] : subscriptions_) {
        std::int64_t count = 0;
        if (subscribed.subscription != nullptr &&
            natsSubscription_GetDropped(subscribed.subscription, &count) == NATS_OK) {
            dropped += static_cast<std::uint64_t>(count);
        }
    }
    if (dropped > dropped_counted_) {
        listener_.on_dropped(dropped - dropped_counted_);
        dropped_counted_ = dropped;
    }
}

}  // namespace pubsubx::cluster
