// One server-side TLS connection: OpenSSL straight on the session's non-blocking socket. The
// session keeps its readiness-based design: it waits for the socket, then calls these, which
// never block. Reads decrypt into the caller's buffer (the server's shared one), so an idle TLS
// connection owns no read buffer; OpenSSL's own buffers are given back when empty
// (SSL_MODE_RELEASE_BUFFERS).
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace asio::ssl {
class context;
}
struct ssl_st;

namespace pubsubx::tls {

// What a call did, or what it waits for before it can go on.
enum class Io {
    done,        // finished (a read or write moved `count` bytes)
    want_read,   // call again once the socket is readable
    want_write,  // call again once the socket is writable
    closed,      // the peer closed the TLS connection (close_notify or end of stream)
    failed,      // a protocol or certificate error: see failure()
};

class Connection {
  public:
    // A connection that will use `context`, which it keeps alive (a reload replaces the
    // server's context, not this one).
    explicit Connection(std::shared_ptr<asio::ssl::context> context);
    ~Connection();
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    // The socket, once accepted; it must be non-blocking. It stays the caller's to close.
    void attach(int fd);
    Io handshake();
    Io read(char* buffer, std::size_t size, std::size_t& count);
    Io write(const char* data, std::size_t size, std::size_t& count);
    // Whole records may wait in OpenSSL (read ahead from the socket) because the last read
    // stopped before OpenSSL asked for more: the socket may not become readable for them.
    bool has_buffered_input() const;
    // Sends close_notify, best effort, without waiting.
    void send_close_notify();
    // Why the last call failed (OpenSSL's reason, with the certificate check's when it failed).
    const std::string& failure() const { return failure_; }
    // "TLSv1.3 TLS_AES_256_GCM_SHA384", for the log.
    std::string description() const;
    // True if `name` is the peer certificate's common name or one of its DNS subject
    // alternative names (exact bytes; no wildcards).
    bool peer_certificate_names(std::string_view name) const;

    // Bytes of the write in flight already written (the session's progress).
    std::size_t written = 0;

  private:
    Io result(int returned, std::size_t& count);

    std::shared_ptr<asio::ssl::context> context_;
    ssl_st* ssl_ = nullptr;
    // The last read ended with want_read: what OpenSSL holds is at most a partial record.
    // Not before the first read: the handshake may have read records that came with its end.
    bool read_wants_socket_ = false;
    std::string failure_;
};

}  // namespace pubsubx::tls
