// One server-side TLS connection: OpenSSL on the session's non-blocking socket. The session
// keeps its readiness-based design: it waits for the socket, then calls these, which never
// block. Reads decrypt into the caller's buffer (the server's shared one), so an idle TLS
// connection owns no read buffer; OpenSSL's own buffers are given back when empty
// (SSL_MODE_RELEASE_BUFFERS). OpenSSL reads the socket itself (read ahead: one system call
// brings every record that fits its buffer), but writes its records into `out_`, which goes
// to the socket in one send() per batch of records instead of one per record.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace asio::ssl {
class context;
}
struct ssl_st;
struct bio_st;

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
    // Decrypts until `buffer` is full (done) or OpenSSL stops (its reason); `count` bytes may
    // come with any result.
    Io read(char* buffer, std::size_t size, std::size_t& count);
    // Goes on with the write in flight, `data` (the same bytes on every call until it is done):
    // encrypts up to kMaxBatch bytes of records, sends them in one system call, and so on until
    // the socket is full (want_write) or everything went out (done). `written` tells how far
    // the peer can read; `progressed` is set when the socket took bytes.
    Io write(std::string_view data, bool& progressed);
    // A new write starts (`written` is 0 again).
    void begin_write();
    // Gives the batch buffer back: an idle connection should hold none.
    void release_idle_memory();
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

    // Bytes of the write in flight whose records the socket has taken whole (the session's
    // progress).
    std::size_t written = 0;

    // Ciphertext bytes per send(): records are encrypted ahead up to this much.
    static constexpr std::size_t kMaxBatch = 256 * 1024;

  private:
    Io result(int returned, std::size_t& count);
    // Sends what `out_` holds; false when the socket took not all of it (or failed: `io`).
    bool send_out(Io& io, bool& progressed);

    std::shared_ptr<asio::ssl::context> context_;
    ssl_st* ssl_ = nullptr;
    int fd_ = -1;
    // The records OpenSSL wrote (its write BIO appends here) and how much of them is sent.
    std::string out_;
    std::size_t out_sent_ = 0;
    // A write is in flight: the records in `out_` are its to send.
    bool write_active_ = false;
    // Of the write in flight: plaintext bytes encrypted into `out_` so far, and where each of
    // its records ends in `out_` with the plaintext it completes (for `written`).
    std::size_t encrypted_ = 0;
    std::vector<std::pair<std::size_t, std::size_t>> record_ends_;
    std::size_t next_record_ = 0;

    // The last read ended with want_read: what OpenSSL holds is at most a partial record.
    // Not before the first read: the handshake may have read records that came with its end.
    bool read_wants_socket_ = false;
    std::string failure_;
};

}  // namespace pubsubx::tls
