#include "link.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace pubsubx::bench {

namespace {

std::array<char, kReadBufferSize> read_buffer;

int connect_to(const Endpoint& endpoint) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    const std::string port = std::to_string(endpoint.port);
    if (getaddrinfo(endpoint.host.c_str(), port.c_str(), &hints, &found) != 0) {
        throw std::runtime_error("cannot resolve " + endpoint.host);
    }
    int fd = -1;
    int error = 0;
    for (addrinfo* at = found; at != nullptr && fd < 0; at = at->ai_next) {
        fd = socket(at->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && ::connect(fd, at->ai_addr, at->ai_addrlen) != 0) {
            error = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(found);
    if (fd < 0) {
        throw std::runtime_error("cannot connect to " + endpoint.host + ":" + port + ": " +
                                 std::strerror(error));
    }
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

}  // namespace

Link::Link(Loop& loop, const Endpoint& endpoint, OnFrame on_frame)
    : loop_(loop), fd_(connect_to(endpoint)), on_frame_(std::move(on_frame)) {
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.ptr = this;
    epoll_ctl(loop_.epoll_fd(), EPOLL_CTL_ADD, fd_, &event);
}

Link::~Link() {
    if (fd_ >= 0) {
        close(fd_);  // also leaves the epoll set
    }
}

void Link::queue_frame(std::string_view frame) {
    append_frame(out_, frame);
}

void Link::send_frame(std::string_view frame) {
    queue_frame(frame);
    flush();
}

void Link::flush() {
    while (fd_ >= 0 && out_head_ < out_.size()) {
        const ssize_t sent =
            ::send(fd_, out_.data() + out_head_, out_.size() - out_head_, MSG_NOSIGNAL);
        if (sent < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                watch_writable(true);
                return;
            }
            if (errno == EINTR) {
                continue;
            }
            peer_closed_ = true;
            return;
        }
        out_head_ += static_cast<std::size_t>(sent);
    }
    out_.clear();
    out_head_ = 0;
    watch_writable(false);
}

void Link::reset() {
    if (fd_ < 0) {
        return;
    }
    const linger abort_on_close{1, 0};
    setsockopt(fd_, SOL_SOCKET, SO_LINGER, &abort_on_close, sizeof abort_on_close);
    close(fd_);
    fd_ = -1;
}

void Link::on_readable() {
    for (;;) {
        const ssize_t count = recv(fd_, read_buffer.data(), read_buffer.size(), 0);
        if (count > 0) {
            splitter_.feed({read_buffer.data(), static_cast<std::size_t>(count)},
                           [this](std::string_view frame) {
                               on_frame_(frame);
                               return true;
                           });
            if (static_cast<std::size_t>(count) < read_buffer.size()) {
                return;
            }
            continue;
        }
        if (count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
        }
        if (count < 0 && errno == EINTR) {
            continue;
        }
        peer_closed_ = true;
        epoll_ctl(loop_.epoll_fd(), EPOLL_CTL_DEL, fd_, nullptr);
        return;
    }
}

void Link::on_writable() {
    flush();
}

void Link::watch_writable(bool on) {
    if (on == watching_writable_ || fd_ < 0) {
        return;
    }
    watching_writable_ = on;
    epoll_event event{};
    event.events = EPOLLIN | (on ? EPOLLOUT : 0U);
    event.data.ptr = this;
    epoll_ctl(loop_.epoll_fd(), EPOLL_CTL_MOD, fd_, &event);
}

Loop::Loop() : epoll_fd_(epoll_create1(EPOLL_CLOEXEC)) {
    if (epoll_fd_ < 0) {
        throw std::runtime_error("epoll_create1 failed");
    }
}

Loop::~Loop() {
    close(epoll_fd_);
}

int Loop::poll(std::chrono::milliseconds timeout) {
    std::array<epoll_event, 256> events;
    const int count = epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()),
                                 static_cast<int>(timeout.count()));
    for (int i = 0; i < count; ++i) {
        auto* link = static_cast<Link*>(events[static_cast<std::size_t>(i)].data.ptr);
        const std::uint32_t flags = events[static_cast<std::size_t>(i)].events;
        if ((flags & (EPOLLIN | EPOLLERR | EPOLLHUP)) != 0) {
            link->on_readable();
        }
        if ((flags & EPOLLOUT) != 0 && !link->closed()) {
            link->on_writable();
        }
    }
    return count < 0 ? 0 : count;
}

bool Loop::run_until(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
    const auto deadline = BenchClock::now() + timeout;
    while (!done()) {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - BenchClock::now());
        if (left.count() <= 0) {
            return done();
        }
        poll(std::min(left, std::chrono::milliseconds{50}));
    }
    return true;
}

}  // namespace pubsubx::bench
