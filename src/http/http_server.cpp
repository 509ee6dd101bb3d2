#include "http_server.hpp"

#include <httplib.h>
#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <system_error>
#include <thread>

#include "status_page.hpp"

namespace pubsubx::http {

namespace {

// /healthz fails when the event loop published nothing for this long: the loop is stuck.
constexpr auto kHealthyWithin = std::chrono::seconds{5};
// Worker threads: a browser's keep-alive connection holds one while it stays open.
constexpr std::size_t kWorkers = 4;

void no_snapshot(httplib::Response& response) {
    response.status = 503;
    response.set_content("no snapshot from the event loop yet\n", "text/plain; charset=utf-8");
}

}  // namespace

struct HttpServer::Impl {
    httplib::Server server;
    std::thread thread;
    std::atomic<bool> finished{false};
};

HttpServer::HttpServer(const SnapshotBoard& board) : impl_(std::make_unique<Impl>()) {
    httplib::Server& server = impl_->server;
    server.new_task_queue = [] { return new httplib::ThreadPool(kWorkers); };
    // httplib's default sets SO_REUSEPORT, which would let a second broker share the port
    // silently: only SO_REUSEADDR, so that a port in use is an error and a restart is not.
    server.set_socket_options([](socket_t sock) {
        int yes = 1;
        setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    });
    server.set_keep_alive_timeout(2);
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
    impl_->thread = std::thread([impl = impl_.get()] {
        impl->server.listen_after_bind();
        impl->finished = true;
    });
}

void HttpServer::stop() {
    if (!impl_->thread.joinable()) {
        return;
    }
    // httplib's stop() does nothing before its thread has begun listening: wait for that.
    while (!impl_->server.is_running() && !impl_->finished) {
        std::this_thread::sleep_for(std::chrono::milliseconds{1});
    }
    impl_->server.stop();
    impl_->thread.join();
}

}  // namespace pubsubx::http
