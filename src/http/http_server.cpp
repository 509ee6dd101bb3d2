#include "http_server.hpp"

#include <httplib.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

#include "status_page.hpp"

namespace pubsubx::http {

namespace {

// /healthz fails when the event loop published nothing for this long: the loop is stuck.
constexpr auto kHealthyWithin = std::chrono::seconds{5};
// An idle keep-alive connection (a browser showing the status page) is closed after this
// long, and httplib notices a stop only then: stop() waits for it a little longer.
constexpr int kKeepAliveSeconds = 1;
constexpr auto kStopWait = std::chrono::milliseconds{1500};

// httplib hands each accepted connection to its task queue. This one runs them on `workers`
// threads with at most `waiting` more in line; beyond that the listener's own thread serves
// the connection, and accepts nothing meanwhile. So the connections httplib holds, each a
// descriptor of the broker's process, stay bounded however many clients come (a browser's
// keep-alive connection holds a worker while it stays open).
class BoundedQueue final : public httplib::TaskQueue {
  public:
    BoundedQueue(std::size_t workers, std::size_t waiting) : max_waiting_(waiting) {
        for (std::size_t i = 0; i < workers; ++i) {
            threads_.emplace_back([this] { work(); });
        }
    }
    ~BoundedQueue() override { shutdown(); }

    void enqueue(std::function<void()> task) override {
        {
            const std::lock_guard lock{mutex_};
            if (!stopping_ && waiting_.size() < max_waiting_) {
                waiting_.push_back(std::move(task));
                wake_.notify_one();
                return;
            }
        }
        task();
    }

    // httplib calls it when its listener stops: the tasks in line still run, then the workers
    // end.
    void shutdown() override {
        {
            const std::lock_guard lock{mutex_};
            stopping_ = true;
        }
        wake_.notify_all();
        for (auto& thread : threads_) {
            if (thread.joinable()) {
                thread.join();
            }
        }
    }

  private:
    void work() {
        for (;;) {
            std::function<void()> task;
            {
                std::unique_lock lock{mutex_};
                wake_.wait(lock, [this] { return stopping_ || !waiting_.empty(); });
                if (waiting_.empty()) {
                    return;
                }
                task = std::move(waiting_.front());
                waiting_.pop_front();
            }
            task();
        }
    }

    const std::size_t max_waiting_;
    std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<std::function<void()>> waiting_;
    bool stopping_ = false;
    std::vector<std::thread> threads_;
};

void no_snapshot(httplib::Response& response) {
    response.status = 503;
    response.set_content("no snapshot from the event loop yet\n", "text/plain; charset=utf-8");
}

}  // namespace

struct HttpServer::Impl {
    explicit Impl(std::shared_ptr<const SnapshotBoard> snapshots) : board(std::move(snapshots)) {}

    std::shared_ptr<const SnapshotBoard> board;
    httplib::Server server;
    std::thread thread;
    std::mutex mutex;
    std::condition_variable finished_changed;
    bool finished = false;  // the listener and its workers have all ended
};

HttpServer::HttpServer(std::shared_ptr<const SnapshotBoard> snapshots)
    : impl_(std::make_shared<Impl>(std::move(snapshots))) {
    httplib::Server& server = impl_->server;
    const SnapshotBoard& board = *impl_->board;
    server.new_task_queue = [] { return new BoundedQueue(kWorkers, kWaitingConnections); };
    // httplib's default sets SO_REUSEPORT, which would let a second broker share the port
    // silently: only SO_REUSEADDR, so that a port in use is an error and a restart is not.
    server.set_socket_options([](socket_t sock) {
        int yes = 1;
        setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    });
    server.set_keep_alive_timeout(kKeepAliveSeconds);
    server.set_read_timeout(5, 0);
    server.set_write_timeout(5, 0);

    server.Get("/metrics", [&board](const httplib::Request&, httplib::Response& response) {
        const auto snapshot = board.latest();
        if (snapshot == nullptr) {
            return no_snapshot(response);
        }
        response.set_content(render_prometheus(*snapshot), kPrometheusContentType);
    });
    server.Get("/status.json", [&board](const httplib::Request&, httplib::Response& response) {
        const auto snapshot = board.latest();
        if (snapshot == nullptr) {
            return no_snapshot(response);
        }
        response.set_header("Cache-Control", "no-store");
        response.set_content(render_status_json(*snapshot), "application/json");
    });
    server.Get("/healthz", [&board](const httplib::Request&, httplib::Response& response) {
        const auto snapshot = board.latest();
        const Health health =
            check_health(snapshot.get(), std::chrono::steady_clock::now(), kHealthyWithin);
        response.status = health.ok ? 200 : 503;
        response.set_header("Cache-Control", "no-store");
        response.set_content(health.text + "\n", "text/plain; charset=utf-8");
    });
    server.Get("/", [](const httplib::Request&, httplib::Response& response) {
        response.set_content(std::string{status_page_html()}, "text/html; charset=utf-8");
    });
    // Read-only: any other method on any path is refused (GET and HEAD are httplib's).
    const auto not_allowed = [](const httplib::Request&, httplib::Response& response) {
        response.status = 405;
        response.set_header("Allow", "GET, HEAD");
        response.set_content("method not allowed\n", "text/plain; charset=utf-8");
    };
    server.Post(".*", not_allowed);
    server.Put(".*", not_allowed);
    server.Patch(".*", not_allowed);
    server.Delete(".*", not_allowed);
    server.Options(".*", not_allowed);
    server.set_error_handler([](const httplib::Request&, httplib::Response& response) {
        if (response.status == 404 && response.body.empty()) {
            response.set_content("not found\n", "text/plain; charset=utf-8");
        }
    });
}

HttpServer::~HttpServer() {
    stop();
}

bool HttpServer::listen(const std::string& address, std::uint16_t port, std::string& error) {
    // httplib reports only failure; the reason is what the failed bind() or listen() left in
    // errno (closing the socket after it does not change it).
    errno = 0;
    int bound = -1;
    if (port == 0) {
        bound = impl_->server.bind_to_any_port(address);
    } else if (impl_->server.bind_to_port(address, port)) {
        bound = port;
    }
    if (bound <= 0) {
        error = errno != 0 ? std::generic_category().message(errno) : "cannot bind";
        return false;
    }
    port_ = static_cast<std::uint16_t>(bound);
    return true;
}

void HttpServer::start() {
    impl_->thread = std::thread([impl = impl_] {
        impl->server.listen_after_bind();
        const std::lock_guard lock{impl->mutex};
        impl->finished = true;
        impl->finished_changed.notify_all();
    });
}

bool HttpServer::stop() {
    if (!impl_->thread.joinable()) {
        return true;
    }
    // httplib's stop() does nothing before its thread has begun listening: wait for that.
    for (;;) {
        {
            const std::lock_guard lock{impl_->mutex};
            if (impl_->server.is_running() || impl_->finished) {
                break;
            }
        }
        std::this_thread::sleep_for(std::chrono::milliseconds{1});
    }
    impl_->server.stop();
    std::unique_lock lock{impl_->mutex};
    const bool finished =
        impl_->finished_changed.wait_for(lock, kStopWait, [this] { return impl_->finished; });
    lock.unlock();
    if (finished) {
        impl_->thread.join();
    } else {
        impl_->thread.detach();  // it holds impl_, and with it the board, until it ends
    }
    return finished;
}

}  // namespace pubsubx::http
