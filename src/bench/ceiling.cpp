// pubsubx-ceiling: the most a broker of this protocol could deliver on this machine, for the
// benchmarks to show PubSubX as a fraction of. It moves the bytes PubSubX moves with none of
// its logic: every subscriber gets every message (topics are not matched), names are not
// checked, nothing is kept for lost clients, queues are not bounded, nothing is counted.
// What it keeps is the least any broker must do, with the broker's batching, so that the gap
// is the broker's own work:
// - one thread and one epoll set: the broker's one core;
// - per epoll_wait round, one read per readable connection (at most 64 KiB, into one buffer
//   shared by all connections), all frames of that read handled, only an unfinished frame's
//   tail copied: the broker's read_buffer_ and FrameSplitter;
// - the deliveries of a round are encoded once into one batch (`<topic> <data>\n\nx`, the
//   PUBLISH frame without its command word), and after all events of the round every touched
//   connection gets one write: the broker's posted flush. A write goes on in system calls of
//   at most 64 KiB until all is sent or the socket is full (the broker's async_write with
//   kMaxWriteChunk); the rest waits for EPOLLOUT, which is asked for only then.
// --mode picks how a batch reaches the subscribers:
// - copy: each subscriber's bytes in one contiguous buffer, the batch copied into each (what
//   PubSubX does today);
// - shared: one immutable, reference-counted batch handed to every subscriber as a segment
//   and sent with sendmsg's scatter-gather (IOV_MAX segments at most), never copied in user
//   space.
// A SUBSCRIBE counts for its whole round: the new subscriber also gets what was published
// earlier in that round, which the broker would not send it. Harmless for the benchmarks,
// which wait for warm-up probes published after the SUBSCRIBE.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <array>
#include <cerrno>
#include <climits>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <deque>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "pubsubx/protocol.hpp"

namespace {

using pubsubx::kDelimiter;
constexpr std::string_view kConnectAnswer{"OK: Conn accepted\n\nx"};
constexpr std::string_view kConnect{"CONNECT "};
constexpr std::string_view kSubscribe{"SUBSCRIBE "};
constexpr std::string_view kPublish{"PUBLISH "};
constexpr std::string_view kDisconnect{"DISCONNECT"};

// The broker's server-wide read buffer and its bytes per write system call (session.cpp).
constexpr std::size_t kReadBufferSize = 64 * 1024;
constexpr std::size_t kMaxWriteChunk = 64 * 1024;
// Ready events taken per epoll_wait, as Asio's epoll reactor takes them.
constexpr int kMaxEvents = 128;

// The broker's keep-alive with its default --keepalive 60 (session.cpp enable_keepalive).
constexpr int kKeepaliveIdleSeconds = 60;
constexpr int kKeepaliveIntervalSeconds = 20;
constexpr int kKeepaliveProbes = 3;

void report_errno(const char* what) {
    std::fprintf(stderr, "pubsubx-ceiling: %s: %s\n", what, std::strerror(errno));
}

bool would_block(int error) {
    return error == EAGAIN || error == EWOULDBLOCK;
}

class FileDescriptor {
  public:
    FileDescriptor() = default;
    explicit FileDescriptor(int fd) : fd_(fd) {}
    FileDescriptor(FileDescriptor&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    FileDescriptor& operator=(FileDescriptor&& other) noexcept {
        if (this != &other) {
            reset();
            fd_ = std::exchange(other.fd_, -1);
        }
        return *this;
    }
    FileDescriptor(const FileDescriptor&) = delete;
    FileDescriptor& operator=(const FileDescriptor&) = delete;
    ~FileDescriptor() { reset(); }

    int get() const { return fd_; }
    bool valid() const { return fd_ >= 0; }
    void reset() {
        if (fd_ >= 0) {
            ::close(fd_);
            fd_ = -1;
        }
    }

  private:
    int fd_ = -1;
};

enum class WriteOutcome { drained, socket_full, failed };

// --mode copy: a subscriber's unsent bytes in one contiguous buffer.
class CopyOutbox {
  public:
    using Batch = std::string_view;  // valid until the round's batch is cleared

    static Batch seal(std::string& frames) { return frames; }
    static Batch connect_answer() { return kConnectAnswer; }

    void add(Batch batch) { bytes_.append(batch); }

    WriteOutcome write_to(int socket) {
        while (sent_ < bytes_.size()) {
            const std::size_t chunk = std::min(bytes_.size() - sent_, kMaxWriteChunk);
            const ssize_t written = ::send(socket, bytes_.data() + sent_, chunk, MSG_NOSIGNAL);
            if (written < 0) {
                return would_block(errno) ? keep_unsent() : WriteOutcome::failed;
            }
            sent_ += static_cast<std::size_t>(written);
        }
        bytes_.clear();
        sent_ = 0;
        return WriteOutcome::drained;
    }

  private:
    // The sent prefix goes once it is half the buffer, so a reader that never quite catches
    // up does not grow the buffer forever, and no more bytes are moved than were sent.
    WriteOutcome keep_unsent() {
        if (sent_ >= bytes_.size() / 2) {
            bytes_.erase(0, sent_);
            sent_ = 0;
        }
        return WriteOutcome::socket_full;
    }

    std::string bytes_;
    std::size_t sent_ = 0;
};

// --mode shared: a subscriber's unsent bytes as references to the rounds' shared batches.
class SharedOutbox {
  public:
    using Batch = std::shared_ptr<const std::string>;

    // The batch's bytes move into the shared buffer; they are not copied.
    static Batch seal(std::string& frames) {
        return std::make_shared<const std::string>(std::move(frames));
    }
    static Batch connect_answer() {
        static const Batch answer = std::make_shared<const std::string>(kConnectAnswer);
        return answer;
    }

    void add(Batch batch) { segments_.push_back({std::move(batch), 0}); }

    WriteOutcome write_to(int socket) {
        std::array<iovec, IOV_MAX> pieces;
        while (!segments_.empty()) {
            msghdr message{};
            message.msg_iov = pieces.data();
            message.msg_iovlen = gather(pieces);
            const ssize_t written = ::sendmsg(socket, &message, MSG_NOSIGNAL);
            if (written < 0) {
                return would_block(errno) ? WriteOutcome::socket_full : WriteOutcome::failed;
            }
            release_sent(static_cast<std::size_t>(written));
        }
        return WriteOutcome::drained;
    }

  private:
    struct Segment {
        Batch bytes;
        std::size_t sent = 0;
    };

    // The unsent bytes of the first segments, at most kMaxWriteChunk: one write's worth.
    std::size_t gather(std::array<iovec, IOV_MAX>& pieces) const {
        std::size_t count = 0;
        std::size_t total = 0;
        for (auto segment = segments_.begin();
             segment != segments_.end() && count < pieces.size() && total < kMaxWriteChunk;
             ++segment) {
            const std::size_t size =
                std::min(segment->bytes->size() - segment->sent, kMaxWriteChunk - total);
            // iovec's base is not const, but sendmsg only reads it.
            pieces[count++] = {const_cast<char*>(segment->bytes->data() + segment->sent), size};
            total += size;
        }
        return count;
    }

    // Fully sent segments let go of their batch; the last one sent may stay in part.
    void release_sent(std::size_t written) {
        while (written > 0) {
            Segment& first = segments_.front();
            const std::size_t unsent = first.bytes->size() - first.sent;
            if (written < unsent) {
                first.sent += written;
                return;
            }
            written -= unsent;
            segments_.pop_front();
        }
    }

    std::deque<Segment> segments_;
};

template <typename Outbox>
struct Connection {
    FileDescriptor socket;
    // The broker's own splitter: only an unfinished frame is copied, carried to the next read.
    pubsubx::FrameSplitter splitter{std::numeric_limits<std::size_t>::max()};
    Outbox outbox;
    bool connected = false;  // its CONNECT was answered
    bool subscriber = false;
    bool flush_due = false;         // listed for this round's flush
    bool socket_full = false;       // until EPOLLOUT says it takes more
    bool polling_writable = false;  // EPOLLOUT is in its epoll events
    bool closed = false;
};

// As the broker's sessions do (session.cpp start and enable_keepalive).
void tune_socket(int socket) {
    const int on = 1;
    ::setsockopt(socket, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    ::setsockopt(socket, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
    ::setsockopt(socket, IPPROTO_TCP, TCP_KEEPIDLE, &kKeepaliveIdleSeconds,
                 sizeof kKeepaliveIdleSeconds);
    ::setsockopt(socket, IPPROTO_TCP, TCP_KEEPINTVL, &kKeepaliveIntervalSeconds,
                 sizeof kKeepaliveIntervalSeconds);
    ::setsockopt(socket, IPPROTO_TCP, TCP_KEEPCNT, &kKeepaliveProbes, sizeof kKeepaliveProbes);
}

template <typename Outbox>
class Ceiling {
  public:
    Ceiling(FileDescriptor epoll, FileDescriptor listener, FileDescriptor signals)
        : epoll_(std::move(epoll)), listener_(std::move(listener)), signals_(std::move(signals)) {}

    // The listener's and the signals' events are told apart by their places in this object.
    bool start() {
        return watch(listener_.get(), EPOLL_CTL_ADD, EPOLLIN, &listener_) &&
               watch(signals_.get(), EPOLL_CTL_ADD, EPOLLIN, &signals_);
    }

    // Until SIGINT or SIGTERM: 0, or 1 if epoll fails.
    int run() {
        std::array<epoll_event, kMaxEvents> events;
        while (!stopping_) {
            const int count = ::epoll_wait(epoll_.get(), events.data(), kMaxEvents, -1);
            if (count < 0 && errno == EINTR) {
                continue;
            }
            if (count < 0) {
                report_errno("epoll_wait");
                return 1;
            }
            for (int i = 0; i < count; ++i) {
                dispatch(events[static_cast<std::size_t>(i)]);
            }
            fan_out_round();
            flush_round();
            closed_.clear();
        }
        return 0;
    }

  private:
    using Conn = Connection<Outbox>;

    void dispatch(const epoll_event& event) {
        if (event.data.ptr == &listener_) {
            accept_all();
            return;
        }
        if (event.data.ptr == &signals_) {
            stopping_ = true;
            return;
        }
        Conn& connection = *static_cast<Conn*>(event.data.ptr);
        if (connection.closed) {
            return;  // closed earlier in this round
        }
        if ((event.events & EPOLLOUT) != 0) {
            connection.socket_full = false;
            request_flush(connection);
        }
        if ((event.events & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0) {
            read_once(connection);
        }
    }

    void accept_all() {
        for (;;) {
            const int socket =
                ::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (socket >= 0) {
                add_connection(FileDescriptor{socket});
                continue;
            }
            if (errno == ECONNABORTED || errno == EINTR) {
                continue;  // that one is gone; the next may be fine
            }
            if (errno == EMFILE || errno == ENFILE) {
                pause_accepting();
            } else if (!would_block(errno)) {
                report_errno("accept");
            }
            return;
        }
    }

    void add_connection(FileDescriptor socket) {
        tune_socket(socket.get());
        auto connection = std::make_unique<Conn>();
        connection->socket = std::move(socket);
        const int fd = connection->socket.get();
        if (!watch(fd, EPOLL_CTL_ADD, EPOLLIN, connection.get())) {
            return;
        }
        connections_.emplace(fd, std::move(connection));
    }

    bool watch(int fd, int operation, std::uint32_t events, void* tag) {
        epoll_event event{};
        event.events = events;
        event.data.ptr = tag;
        if (::epoll_ctl(epoll_.get(), operation, fd, &event) != 0) {
            report_errno("epoll_ctl");
            return false;
        }
        return true;
    }

    // Out of descriptors: the listener would wake every round until a connection closes.
    void pause_accepting() {
        report_errno("accept (paused until a connection closes)");
        ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, listener_.get(), nullptr);
        accepting_paused_ = true;
    }

    void resume_accepting() {
        accepting_paused_ = !watch(listener_.get(), EPOLL_CTL_ADD, EPOLLIN, &listener_);
    }

    void read_once(Conn& connection) {
        const ssize_t count =
            ::recv(connection.socket.get(), read_buffer_.data(), read_buffer_.size(), 0);
        if (count < 0 && would_block(errno)) {
            return;
        }
        if (count <= 0) {
            close(connection);
            return;
        }
        const std::string_view bytes{read_buffer_.data(), static_cast<std::size_t>(count)};
        connection.splitter.feed(
            bytes, [&](std::string_view frame) { return handle_frame(connection, frame); });
    }

    // False when the frame closed the connection.
    bool handle_frame(Conn& connection, std::string_view frame) {
        if (frame.empty()) {
            return true;  // receivers ignore empty frames (the wire protocol)
        }
        if (!connection.connected) {
            return accept_connect(connection, frame);
        }
        if (frame.starts_with(kPublish)) {
            append_delivery(frame.substr(kPublish.size()));
        } else if (frame.starts_with(kSubscribe)) {
            subscribe(connection);
        } else if (frame == kDisconnect) {
            close(connection);
            return false;
        }
        return true;
    }

    // The broker's bytes for "PUBLISH <rest>": <rest> itself, but nothing when the topic is
    // empty, and "<topic> " when there is no data field (protocol.md). The one search for
    // the data field is what any broker must do to find where a topic ends.
    void append_delivery(std::string_view rest) {
        if (rest.empty() || rest.front() == ' ') {
            return;
        }
        round_frames_.append(rest);
        if (rest.find(' ') == std::string_view::npos) {
            round_frames_.push_back(' ');
        }
        round_frames_.append(kDelimiter);
    }

    // The first frame must be CONNECT <name>; the name is neither checked nor remembered.
    bool accept_connect(Conn& connection, std::string_view frame) {
        if (!frame.starts_with(kConnect) || frame.size() == kConnect.size()) {
            close(connection);
            return false;
        }
        connection.connected = true;
        connection.outbox.add(Outbox::connect_answer());
        request_flush(connection);
        return true;
    }

    void subscribe(Conn& connection) {
        if (!connection.subscriber) {
            connection.subscriber = true;
            subscribers_.push_back(&connection);
        }
    }

    void fan_out_round() {
        if (round_frames_.empty()) {
            return;
        }
        const std::size_t size = round_frames_.size();
        const typename Outbox::Batch batch = Outbox::seal(round_frames_);
        for (Conn* subscriber : subscribers_) {
            subscriber->outbox.add(batch);
            request_flush(*subscriber);
        }
        // A moved-from batch (shared mode) starts again at the last round's size instead of
        // growing to it one reallocation at a time.
        round_frames_.clear();
        round_frames_.reserve(size);
    }

    void request_flush(Conn& connection) {
        if (!connection.flush_due) {
            connection.flush_due = true;
            flushes_.push_back(&connection);
        }
    }

    void flush_round() {
        for (Conn* connection : flushes_) {
            connection->flush_due = false;
            if (!connection->closed) {
                flush(*connection);
            }
        }
        flushes_.clear();
    }

    void flush(Conn& connection) {
        if (connection.socket_full) {
            return;
        }
        switch (connection.outbox.write_to(connection.socket.get())) {
            case WriteOutcome::drained:
                poll_writable(connection, false);
                break;
            case WriteOutcome::socket_full:
                connection.socket_full = true;
                poll_writable(connection, true);
                break;
            case WriteOutcome::failed:
                close(connection);
                break;
        }
    }

    // Level-triggered EPOLLOUT, asked for only while unsent bytes wait for room.
    void poll_writable(Conn& connection, bool on) {
        if (connection.polling_writable == on) {
            return;
        }
        const std::uint32_t events = on ? EPOLLIN | EPOLLOUT : EPOLLIN;
        if (watch(connection.socket.get(), EPOLL_CTL_MOD, events, &connection)) {
            connection.polling_writable = on;
        }
    }

    // The connection's memory lives until the round ends: later events of the round and the
    // round's flush list may still point at it.
    void close(Conn& connection) {
        connection.closed = true;
        if (connection.subscriber) {
            std::erase(subscribers_, &connection);
        }
        auto entry = connections_.extract(connection.socket.get());
        closed_.push_back(std::move(entry.mapped()));
        connection.socket.reset();
        if (accepting_paused_) {
            resume_accepting();
        }
    }

    FileDescriptor epoll_;
    FileDescriptor listener_;
    FileDescriptor signals_;
    bool stopping_ = false;
    bool accepting_paused_ = false;
    std::array<char, kReadBufferSize> read_buffer_;
    std::string round_frames_;  // the round's deliveries, encoded once
    std::unordered_map<int, std::unique_ptr<Conn>> connections_;
    std::vector<Conn*> subscribers_;
    std::vector<Conn*> flushes_;
    std::vector<std::unique_ptr<Conn>> closed_;
};

// Raises the soft descriptor limit to the hard one, as pubsubx-server does, so that the
// harness's connection counts fit.
void raise_descriptor_limit() {
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        ::setrlimit(RLIMIT_NOFILE, &limit);
    }
}

struct ListenAddress {
    sockaddr_storage storage{};
    socklen_t size = 0;
};

std::optional<ListenAddress> parse_address(const std::string& text, std::uint16_t port) {
    ListenAddress address;
    auto* v4 = reinterpret_cast<sockaddr_in*>(&address.storage);
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&address.storage);
    if (::inet_pton(AF_INET, text.c_str(), &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        address.size = sizeof *v4;
    } else if (::inet_pton(AF_INET6, text.c_str(), &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        address.size = sizeof *v6;
    } else {
        return std::nullopt;
    }
    return address;
}

// "127.0.0.1:40312" or "[::1]:40312", as pubsubx-server writes its address.
std::string address_text(const ListenAddress& address) {
    std::array<char, INET6_ADDRSTRLEN> host{};
    if (address.storage.ss_family == AF_INET) {
        const auto* v4 = reinterpret_cast<const sockaddr_in*>(&address.storage);
        ::inet_ntop(AF_INET, &v4->sin_addr, host.data(), host.size());
        return std::string{host.data()} + ":" + std::to_string(ntohs(v4->sin_port));
    }
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&address.storage);
    ::inet_ntop(AF_INET6, &v6->sin6_addr, host.data(), host.size());
    return "[" + std::string{host.data()} + "]:" + std::to_string(ntohs(v6->sin6_port));
}

// The listening socket, with `address` updated to the port it got (port 0: any free one), or
// none and `error` says why.
FileDescriptor listen_on(ListenAddress& address, std::string& error) {
    FileDescriptor listener{
        ::socket(address.storage.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)};
    const int on = 1;
    auto* const where = reinterpret_cast<sockaddr*>(&address.storage);
    const bool listening =
        listener.valid() &&
        ::setsockopt(listener.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) == 0 &&
        ::bind(listener.get(), where, address.size) == 0 &&
        ::listen(listener.get(), SOMAXCONN) == 0 &&
        ::getsockname(listener.get(), where, &address.size) == 0;
    if (!listening) {
        error = std::strerror(errno);
        return {};
    }
    return listener;
}

// SIGINT and SIGTERM arrive through a descriptor in the epoll set, so they end the loop
// between rounds and nothing needs to be async-signal-safe.
FileDescriptor stop_signals() {
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    if (::sigprocmask(SIG_BLOCK, &signals, nullptr) != 0) {
        return {};
    }
    return FileDescriptor{::signalfd(-1, &signals, SFD_NONBLOCK | SFD_CLOEXEC)};
}

template <typename Outbox>
int serve(FileDescriptor listener, FileDescriptor signals) {
    FileDescriptor epoll{::epoll_create1(EPOLL_CLOEXEC)};
    if (!epoll.valid()) {
        report_errno("epoll_create1");
        return 1;
    }
    auto ceiling = std::make_unique<Ceiling<Outbox>>(std::move(epoll), std::move(listener),
                                                     std::move(signals));
    return ceiling->start() ? ceiling->run() : 1;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{
        "pubsubx-ceiling: moves PubSubX's bytes from publishers to subscribers with no broker "
        "logic (every subscriber gets every message), with the broker's batching on one core: "
        "the ceiling the benchmarks measure PubSubX against."};
    std::uint16_t port = 0;
    std::string bind = "127.0.0.1";
    std::string mode = "shared";
    app.add_option("port", port, "Port to listen on; 0 takes any free port")->required();
    app.add_option("--bind", bind, "Address to listen on")->capture_default_str();
    app.add_option("--mode", mode,
                   "How a batch reaches the subscribers: shared (one buffer, scatter-gather "
                   "writes) or copy (copied into each subscriber's buffer, as PubSubX does)")
        ->check(CLI::IsMember({"shared", "copy"}))
        ->capture_default_str();
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& error) {
        return app.exit(error) == 0 ? 0 : 2;
    }
    std::optional<ListenAddress> address = parse_address(bind, port);
    if (!address) {
        std::fprintf(stderr, "pubsubx-ceiling: invalid --bind address '%s'\n", bind.c_str());
        return 2;
    }
    FileDescriptor signals = stop_signals();
    if (!signals.valid()) {
        report_errno("signalfd");
        return 1;
    }
    const std::string wanted = address_text(*address);
    std::string listen_error;
    FileDescriptor listener = listen_on(*address, listen_error);
    if (!listener.valid()) {
        std::fprintf(stderr, "pubsubx-ceiling: cannot listen on %s: %s\n", wanted.c_str(),
                     listen_error.c_str());
        return 1;
    }
    raise_descriptor_limit();
    std::printf("pubsubx-ceiling listening on %s (mode %s)\n", address_text(*address).c_str(),
                mode.c_str());
    std::fflush(stdout);
    return mode == "copy" ? serve<CopyOutbox>(std::move(listener), std::move(signals))
                          : serve<SharedOutbox>(std::move(listener), std::move(signals));
}
