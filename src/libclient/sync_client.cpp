// SyncClient: a Client on an io_context of its own, run by one thread; every call waits for
// the operation's completion.
#include <asio/io_context.hpp>
#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>

#include "pubsubx/client.hpp"

namespace pubsubx {

class SyncClient::State {
  public:
    explicit State(std::size_t max_queued) : max_queued_(max_queued) {
        thread_ = std::thread([this] { io_.run(); });
    }
    ~State() {
        if (client_ != nullptr) {
            client_->abort();
        }
        work_.reset();
        thread_.join();  // the abort's handlers have run: the io_context is out of work
        client_.reset();
    }

    bool has_client() const { return client_ != nullptr; }
    Client& client() {
        if (client_ == nullptr) {
            throw std::system_error(client_errc::not_connected);
        }
        return *client_;
    }

    SessionInfo connect(ClientOptions options) {
        if (client_ != nullptr) {
            throw std::system_error(client_errc::already_connected);
        }
        client_ = std::make_unique<Client>(io_.get_executor(), std::move(options));
        client_->set_message_handler([this](std::string_view topic, std::string_view data) {
            std::lock_guard lock{mutex_};
            if (max_queued_ == 0) {
                ++dropped_;  // a queue of none keeps nothing
                return;
            }
            if (messages_.size() >= max_queued_) {
                messages_.pop_front();
                ++dropped_;
            }
            messages_.push_back({std::string{topic}, std::string{data}});
            arrived_.notify_one();
        });
        client_->set_event_handler([this](const ClientEvent& event) {
            std::lock_guard lock{mutex_};
            events_.push_back(event);
        });
        std::promise<std::pair<std::error_code, SessionInfo>> answer;
        auto answered = answer.get_future();
        client_->async_connect([&answer](std::error_code error, SessionInfo info) {
            answer.set_value({error, std::move(info)});
        });
        auto [error, info] = answered.get();
        if (error) {
            client_.reset();  // closed already: nothing of it runs any more
            throw std::system_error(error, info.reason);
        }
        return info;
    }

    std::optional<Message> next_message(std::chrono::milliseconds timeout) {
        std::unique_lock lock{mutex_};
        if (!arrived_.wait_for(lock, timeout, [this] { return !messages_.empty(); })) {
            return std::nullopt;
        }
        Message message = std::move(messages_.front());
        messages_.pop_front();
        return message;
    }

    std::vector<ClientEvent> take_events() {
        std::lock_guard lock{mutex_};
        return std::exchange(events_, {});
    }

    std::uint64_t dropped() const {
        std::lock_guard lock{mutex_};
        return dropped_;
    }

  private:
    asio::io_context io_{1};
    asio::executor_work_guard<asio::io_context::executor_type> work_{io_.get_executor()};
    std::unique_ptr<Client> client_;
    std::size_t max_queued_;
    mutable std::mutex mutex_;
    std::condition_variable arrived_;
    std::deque<Message> messages_;
    std::vector<ClientEvent> events_;
    std::uint64_t dropped_ = 0;
    std::thread thread_;  // last: started once everything it uses exists
};

namespace {

void throw_if(const std::error_code& error) {
    if (error) {
        throw std::system_error(error);
    }
}

// Runs an operation and waits for its error code. The exception is made here, in the caller's
// thread (asio::use_future would make it on the client's thread and hand it over).
template <typename Start>
void wait_for(Start&& start) {
    std::promise<std::error_code> done;
    auto finished = done.get_future();
    start([&done](std::error_code error) { done.set_value(error); });
    throw_if(finished.get());
}

}  // namespace

SyncClient::SyncClient(std::size_t max_queued_messages)
    : state_(std::make_unique<State>(max_queued_messages)) {}

SyncClient::~SyncClient() {
    // A destructor must end: with no bound (disconnect_wait 0) it closes without a DISCONNECT.
    try {
        if (state_->has_client() && state_->client().options().disconnect_wait.count() > 0) {
            disconnect();
        }
    } catch (const std::system_error&) {
        // Not connected, or the connection is gone: the state's destructor closes what is left.
    }
}

SessionInfo SyncClient::connect(ClientOptions options) {
    return state_->connect(std::move(options));
}

void SyncClient::subscribe(const std::string& filter) {
    wait_for([&](auto done) { state_->client().async_subscribe(filter, std::move(done)); });
}

void SyncClient::unsubscribe(const std::string& filter) {
    wait_for([&](auto done) { state_->client().async_unsubscribe(filter, std::move(done)); });
}

void SyncClient::publish(std::string_view topic, std::string_view data) {
    throw_if(state_->client().publish(topic, data));
}

std::optional<SyncClient::Message> SyncClient::next_message(std::chrono::milliseconds timeout) {
    return state_->next_message(timeout);
}

void SyncClient::disconnect() {
    wait_for([&](auto done) { state_->client().async_disconnect(std::move(done)); });
}

std::vector<ClientEvent> SyncClient::take_events() {
    return state_->take_events();
}

std::uint64_t SyncClient::dropped_messages() const {
    return state_->dropped();
}

ClientStats SyncClient::stats() const {
    return state_->client().stats();
}

}  // namespace pubsubx
