// Helpers for tests against the real binaries over real loopback TCP: a child process whose
// output is watched, a plain blocking socket client that speaks frames, and a nats-server for
// the cluster tests' backplane.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pubsubx/protocol.hpp"

namespace pubsubx::testing {

using namespace std::chrono_literals;
using Millis = std::chrono::milliseconds;

// Path of a built binary, handed to the tests by meson through the environment.
std::string binary_path(const char* environment_variable);

// RLIMIT_NOFILE for a child, set between fork and exec (as `prlimit` would).
struct DescriptorLimit {
    unsigned soft = 0;
    unsigned hard = 0;
};

// Resource limits for a child, set between fork and exec.
struct ChildLimits {
    std::optional<DescriptorLimit> descriptors;
    // RLIMIT_FSIZE's soft limit in bytes, a full disk for the child's files; the hard limit
    // stays unlimited, so the test can raise it again while the child runs (prlimit(2)).
    std::optional<std::uint64_t> file_size;

    static ChildLimits descriptors_at(DescriptorLimit limit) {
        ChildLimits limits;
        limits.descriptors = limit;
        return limits;
    }
    static ChildLimits file_size_at(std::uint64_t bytes) {
        ChildLimits limits;
        limits.file_size = bytes;
        return limits;
    }
};

// A child process with its stdout and stderr in one pipe (and optionally its stdin).
class ChildProcess {
  public:
    ChildProcess(const std::string& program, const std::vector<std::string>& args,
                 bool pipe_stdin = false, const ChildLimits& limits = {});
    ~ChildProcess();
    ChildProcess(const ChildProcess&) = delete;
    ChildProcess& operator=(const ChildProcess&) = delete;

    // Waits until the output contains `needle` (at or after `from`); true if it did in time.
    bool wait_for_output(std::string_view needle, Millis timeout = 5000ms, std::size_t from = 0);
    // Everything printed so far (reads what is ready without waiting).
    const std::string& output();
    void write_stdin(std::string_view text);
    void close_stdin();
    void send_signal(int signal);
    // Closes the reading end of the output pipe, as a log reader that goes away does.
    void close_output();
    // Waits for the process to end; returns its exit code, 128+N for signal N, or nullopt if
    // it is still running after the timeout.
    std::optional<int> wait_exit(Millis timeout = 5000ms);
    pid_t pid() const { return pid_; }

  protected:
    // For a subclass that must prepare something (a directory, a port) before it calls start().
    ChildProcess() = default;
    // Starts `program`; a process this object started before must have ended (wait_exit). The
    // output of every start accumulates, so offsets into output() stay valid.
    void start(const std::string& program, const std::vector<std::string>& args,
               bool pipe_stdin = false, const ChildLimits& limits = {});

  private:
    // Reads what is available within `timeout`; false at end of output.
    bool read_output(Millis timeout);

    pid_t pid_ = -1;
    int output_fd_ = -1;
    int stdin_fd_ = -1;
    std::string output_;
    std::optional<int> exit_code_;
};

// pubsubx-server on an ephemeral loopback port.
class ServerProcess : public ChildProcess {
  public:
    explicit ServerProcess(std::vector<std::string> extra_args = {},
                           const ChildLimits& limits = {});
    std::uint16_t port() const { return port_; }

  private:
    std::uint16_t port_ = 0;
};

// A directory of its own under $TMPDIR (or /tmp), removed with all it holds at the end.
class TemporaryDirectory {
  public:
    // `purpose` goes into the name, so that one left behind says where it came from.
    explicit TemporaryDirectory(std::string_view purpose);
    ~TemporaryDirectory();
    TemporaryDirectory(const TemporaryDirectory&) = delete;
    TemporaryDirectory& operator=(const TemporaryDirectory&) = delete;

    const std::string& path() const { return path_; }

  private:
    std::string path_;
};

// nats-server with JetStream on 127.0.0.1, for the cluster tests' backplane: a port the server
// picked itself (no race with other tests for a port chosen in advance) and a fresh store. The
// binary is $PUBSUBX_NATS_SERVER, else nats-server on PATH, else /usr/sbin/nats-server (where
// Debian installs it, outside a normal user's PATH).
class NatsServerProcess : public ChildProcess {
  public:
    // Returns once the server accepts connections; throws with its output if it does not.
    NatsServerProcess();
    ~NatsServerProcess();

    std::uint16_t port() const { return port_; }
    // "nats://127.0.0.1:<port>", as pubsubx-server's --cluster takes it.
    std::string url() const;
    // SIGTERM, then SIGKILL if it still runs after `grace`; returns once it has exited.
    void stop(Millis grace = 5000ms);
    // Stops it if it runs (as stop() does), then starts it again on the same port with the same
    // store, so JetStream keeps its streams; returns once it accepts connections again.
    void restart();
    // SIGKILL, a backplane that crashes; returns once it has exited.
    void kill();

  private:
    // Starts nats-server on `port_argument` ("-1": one it picks) and waits for "Server is ready".
    void launch(const std::string& port_argument);
    std::uint16_t port_from_ports_file();
    void wait_accepting();
    [[noreturn]] void fail_start(const std::string& why);

    std::string program_;
    TemporaryDirectory directory_{"nats"};
    std::uint16_t port_ = 0;
};

// True if something accepts a TCP connection on 127.0.0.1:`port` right now.
bool port_accepts_connections(std::uint16_t port);

// pubsubx-server's options for a node named `node` in cluster `cluster` on `nats`, holding its
// lease for `lease_seconds`: ServerProcess node_a(cluster_args(nats, "a", "test", 2)).
std::vector<std::string> cluster_args(const NatsServerProcess& nats, std::string node,
                                      std::string cluster, int lease_seconds);
// Waits until the node logs "Cluster: node '<node>' joined cluster '<cluster>'"; false if not
// within `timeout`.
bool wait_joined(ServerProcess& node, Millis timeout = 10000ms);

class TestClient {
  public:
    // `receive_buffer` > 0 shrinks the socket's receive buffer, so that a client that does not
    // read stalls the server's writes quickly. `source` is the loopback address to connect
    // from (any of 127.0.0.0/8): the server tells clients apart by it.
    explicit TestClient(std::uint16_t port, int receive_buffer = 0,
                        const char* source = "127.0.0.1");
    ~TestClient();
    TestClient(const TestClient&) = delete;
    TestClient& operator=(const TestClient&) = delete;

    void send_raw(std::string_view bytes);
    void send_frame(std::string_view frame);
    // The next frame from the server, or nullopt on timeout or end of stream.
    std::optional<std::string> read_frame(Millis timeout = 3000ms);
    // True when the server closes the connection within `timeout` (frames before that are
    // collected and can still be read).
    bool wait_closed(Millis timeout = 3000ms);
    // Reads at most `max_bytes` of whatever has arrived (waiting up to `timeout`), as a slow
    // reader would; the frames it completes are dropped. Returns the bytes read.
    std::size_t read_slowly(std::size_t max_bytes, Millis timeout);
    // Frames received and not read yet.
    std::size_t frames_waiting() const { return frames_.size(); }
    // Ends the connection without DISCONNECT: a FIN, or a reset when `reset` is set.
    void drop(bool reset = false);
    // Sends a FIN but keeps reading: the server sees the end of the stream (the client is
    // lost), and what it wrote before closing can still be read (wait_closed, read_frame).
    void shutdown_sending();
    // Sends CONNECT and expects the accept reply.
    void connect_as(std::string_view name);
    // Proves that everything this client sent before was processed by the server: publishes a
    // probe to a private topic it subscribes to and waits until it comes back. The topic is
    // `topic_prefix` and a number (a server with --users must allow it).
    void barrier(std::string_view topic_prefix = "barrier-");
    std::uint16_t local_port() const;

  private:
    bool receive(Millis timeout);

    int fd_ = -1;
    bool peer_closed_ = false;
    FrameSplitter splitter_{1 << 24};
    std::deque<std::string> frames_;
    int barrier_count_ = 0;
};

// A loopback listener that accepts connections and never answers them: a broker that hangs.
class SilentServer {
  public:
    SilentServer();
    ~SilentServer();
    SilentServer(const SilentServer&) = delete;
    SilentServer& operator=(const SilentServer&) = delete;

    std::uint16_t port() const { return port_; }
    // Accepts one connection and reads from it until `needle` has arrived; true if in time.
    bool accept_and_read(std::string_view needle, Millis timeout = 3000ms);
    // Then, on that connection: reads on until `needle` arrives, or writes bytes (a server that
    // answers some frames, then hangs).
    bool read_until(std::string_view needle, Millis timeout = 3000ms);
    // What the last read_until (or accept_and_read) received.
    const std::string& received() const { return received_; }
    void send_raw(std::string_view bytes);
    // Ends the connection: with `reset`, abruptly (RST), as a crashed broker's kernel does.
    void close_connection(bool reset = false);

  private:
    int listen_fd_ = -1;
    int connection_fd_ = -1;
    std::uint16_t port_ = 0;
    std::string received_;
};

// Publishes `count` messages of `size` bytes to topic t in one write (fills a slow reader).
void publish_bulk(TestClient& publisher, int count, std::size_t size);
// Publishes 100 messages of 1,000 bytes to t every `pause` until the server logs `needle`;
// false if it has not after `rounds` rounds.
bool publish_until_logged(ServerProcess& server, TestClient& publisher, std::string_view needle,
                          Millis pause = 10ms, int rounds = 200);

// Waits until the server logs that client `name` is lost; throws if it does not.
void wait_lost(ServerProcess& server, const std::string& name);
// A client `name` subscribed to `topic` whose connection then ends without DISCONNECT.
void make_lost_subscriber(ServerProcess& server, const std::string& name, const std::string& topic);

}  // namespace pubsubx::testing
