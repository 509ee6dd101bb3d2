#include "link.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "tls/appending_bio.hpp"

namespace pubsubx::bench {

namespace {

std::array<char, kReadBufferSize> read_buffer;

// Ciphertext bytes per send(): records are made ahead up to this much.
constexpr std::size_t kMaxBatch = 256 * 1024;

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

std::string openssl_reason() {
    const unsigned long error = ERR_get_error();
    ERR_clear_error();
    const char* reason = error != 0 ? ERR_reason_error_string(error) : nullptr;
    return reason != nullptr ? reason : "connection closed";
}

}  // namespace

std::shared_ptr<ssl_ctx_st> make_tls_context(const std::string& ca_file, bool insecure) {
    std::shared_ptr<SSL_CTX> context{SSL_CTX_new(TLS_client_method()), SSL_CTX_free};
    SSL_CTX_set_min_proto_version(context.get(), TLS1_2_VERSION);
    // The send buffer may grow (and move) between a write that wanted the socket and its retry.
    SSL_CTX_set_mode(context.get(),
                     SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    // One read system call brings every record that has arrived (up to the read buffer's
    // size), not one record header and one record body at a time: the harness should cost
    // less than the broker it measures.
    SSL_CTX_set_read_ahead(context.get(), 1);
    SSL_CTX_set_default_read_buffer_len(context.get(), kReadBufferSize);
    SSL_CTX_set_verify(context.get(), insecure ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, nullptr);
    const int loaded = ca_file.empty()
                           ? SSL_CTX_set_default_verify_paths(context.get())
                           : SSL_CTX_load_verify_locations(context.get(), ca_file.c_str(), nullptr);
    if (!insecure && loaded != 1) {
        throw std::runtime_error("cannot load the CA certificates " + ca_file + ": " +
                                 openssl_reason());
    }
    return context;
}

Link::Link(Loop& loop, const Endpoint& endpoint, OnFrame on_frame)
    : loop_(loop), fd_(connect_to(endpoint)), on_frame_(std::move(on_frame)) {
    if (endpoint.tls != nullptr) {
        handshake(endpoint);
    }
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.ptr = this;
    epoll_ctl(loop_.epoll_fd(), EPOLL_CTL_ADD, fd_, &event);
}

// Blocking, before the link joins the loop: setting up is not what the scenarios measure.
void Link::handshake(const Endpoint& endpoint) {
    ssl_ = SSL_new(endpoint.tls.get());
    SSL_set_fd(ssl_, fd_);
    if (!endpoint.tls_insecure) {
        in6_addr address{};
        if (inet_pton(AF_INET, endpoint.host.c_str(), &address) == 1 ||
            inet_pton(AF_INET6, endpoint.host.c_str(), &address) == 1) {
            X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), endpoint.host.c_str());
        } else {
            SSL_set_tlsext_host_name(ssl_, endpoint.host.c_str());
            SSL_set1_host(ssl_, endpoint.host.c_str());
        }
    }
    const int flags = fcntl(fd_, F_GETFL);
    fcntl(fd_, F_SETFL, flags & ~O_NONBLOCK);
    if (SSL_connect(ssl_) != 1) {
        std::string reason = openssl_reason();
        if (const long verified = SSL_get_verify_result(ssl_); verified != X509_V_OK) {
            reason += std::string{" ("} + X509_verify_cert_error_string(verified) + ")";
        }
        SSL_free(ssl_);
        close(fd_);
        throw std::runtime_error("TLS handshake with " + endpoint.host + ":" +
                                 std::to_string(endpoint.port) + " failed: " + reason);
    }
    fcntl(fd_, F_SETFL, flags);
    SSL_set0_wbio(ssl_, tls::new_appending_bio(tls_out_));
}

Link::~Link() {
    SSL_free(ssl_);
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

// Sends `bytes` from `sent` on, until all is sent or the socket is full.
Link::Sent Link::send_from(const std::string& bytes, std::size_t& sent) {
    while (sent < bytes.size()) {
        const ssize_t count = ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
        if (count < 0) {
            if (errno == EINTR) {
                continue;
            }
            return errno == EAGAIN || errno == EWOULDBLOCK ? Sent::socket_full : Sent::failed;
        }
        sent += static_cast<std::size_t>(count);
    }
    return Sent::all;
}

void Link::flush() {
    if (ssl_ != nullptr) {
        if (!write_tls()) {
            peer_closed_ = true;
        }
        return;
    }
    if (fd_ < 0) {
        return;
    }
    switch (send_from(out_, out_head_)) {
        case Sent::all:
            break;
        case Sent::socket_full:
            watch_writable(true);
            return;
        case Sent::failed:
            peer_closed_ = true;
            return;
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

bool Link::write_tls() {
    while (fd_ >= 0) {
        switch (send_from(tls_out_, tls_sent_)) {
            case Sent::all:
                break;
            case Sent::socket_full:
                watch_writable(true);
                return true;
            case Sent::failed:
                return false;
        }
        tls_out_.clear();
        tls_sent_ = 0;
        if (out_head_ == out_.size()) {
            break;
        }
        while (out_head_ < out_.size() && tls_out_.size() < kMaxBatch) {
            std::size_t made = 0;
            if (SSL_write_ex(ssl_, out_.data() + out_head_, out_.size() - out_head_, &made) != 1) {
                const int error = SSL_get_error(ssl_, 0);
                ERR_clear_error();
                if (error != SSL_ERROR_WANT_READ) {
                    return false;
                }
                if (tls_out_.empty()) {
                    return true;  // on_readable flushes again
                }
                break;
            }
            out_head_ += made;
        }
    }
    out_.clear();
    out_head_ = 0;
    watch_writable(false);
    return true;
}

bool Link::read_tls() {
    for (;;) {
        std::size_t count = 0;
        if (SSL_read_ex(ssl_, read_buffer.data(), read_buffer.size(), &count) == 1) {
            splitter_.feed({read_buffer.data(), count}, [this](std::string_view frame) {
                on_frame_(frame);
                return true;
            });
            continue;
        }
        const int error = SSL_get_error(ssl_, 0);
        ERR_clear_error();
        if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) {
            if (unsent() > 0) {
                flush();
            }
            return true;
        }
        return false;
    }
}

void Link::on_readable() {
    if (ssl_ != nullptr) {
        if (fd_ >= 0 && !read_tls()) {
            peer_closed_ = true;
            epoll_ctl(loop_.epoll_fd(), EPOLL_CTL_DEL, fd_, nullptr);
        }
        return;
    }
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
