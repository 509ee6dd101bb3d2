#include "connection.hpp"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>

#include <algorithm>
#include <asio/ssl/context.hpp>
#include <cerrno>
#include <cstring>

#include "appending_bio.hpp"
#include "openssl_errors.hpp"

namespace pubsubx::tls {

namespace {

bool same_bytes(const unsigned char* bytes, int size, std::string_view name) {
    return size >= 0 && static_cast<std::size_t>(size) == name.size() &&
           std::memcmp(bytes, name.data(), name.size()) == 0;
}

// A subject's CN may be any of ASN.1's string types (UTF-16 BMPString, say): compared as the
// UTF-8 it stands for, never as its raw bytes, which could spell another name.
bool same_text(const ASN1_STRING* text, std::string_view name) {
    unsigned char* utf8 = nullptr;
    const int size = text != nullptr ? ASN1_STRING_to_UTF8(&utf8, text) : -1;
    const bool same = size >= 0 && same_bytes(utf8, size, name);
    OPENSSL_free(utf8);
    return same;
}

// A DNS name is an IA5String (ASCII) by definition.
bool same_dns_name(const ASN1_IA5STRING* text, std::string_view name) {
    if (text == nullptr || ASN1_STRING_type(text) != V_ASN1_IA5STRING) {
        return false;
    }
    const unsigned char* bytes = ASN1_STRING_get0_data(text);
    const int size = ASN1_STRING_length(text);
    // Bytes past ASCII are no DNS name: read as UTF-8 they could spell another name.
    return std::all_of(bytes, bytes + std::max(size, 0),
                       [](unsigned char c) { return c < 0x80; }) &&
           same_bytes(bytes, size, name);
}

bool has_common_name(X509* certificate, std::string_view name) {
    const X509_NAME* subject = X509_get_subject_name(certificate);
    for (int at = X509_NAME_get_index_by_NID(subject, NID_commonName, -1); at >= 0;
         at = X509_NAME_get_index_by_NID(subject, NID_commonName, at)) {
        if (same_text(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, at)), name)) {
            return true;
        }
    }
    return false;
}

bool has_dns_name(X509* certificate, std::string_view name) {
    auto* names = static_cast<GENERAL_NAMES*>(
        X509_get_ext_d2i(certificate, NID_subject_alt_name, nullptr, nullptr));
    bool found = false;
    for (int i = 0; names != nullptr && i < sk_GENERAL_NAME_num(names) && !found; ++i) {
        const GENERAL_NAME* entry = sk_GENERAL_NAME_value(names, i);
        found = entry->type == GEN_DNS && same_dns_name(entry->d.dNSName, name);
    }
    GENERAL_NAMES_free(names);
    return found;
}

}  // namespace

Connection::Connection(std::shared_ptr<asio::ssl::context> context)
    : context_(std::move(context)), ssl_(SSL_new(context_->native_handle())) {
    if (ssl_ == nullptr) {
        throw std::bad_alloc{};
    }
}

Connection::~Connection() {
    SSL_free(ssl_);
}

void Connection::attach(int fd) {
    fd_ = fd;
    BIO* in = BIO_new_socket(fd, BIO_NOCLOSE);
    if (in == nullptr) {
        throw std::bad_alloc{};
    }
    BIO* out = nullptr;
    try {
        out = new_appending_bio(out_);
    } catch (const std::bad_alloc&) {
        BIO_free(in);
        throw;
    }
    SSL_set_bio(ssl_, in, out);
    SSL_set_accept_state(ssl_);
}

bool Connection::send_out(Io& io, bool& progressed) {
    while (out_sent_ < out_.size()) {
        const ssize_t sent =
            ::send(fd_, out_.data() + out_sent_, out_.size() - out_sent_, MSG_NOSIGNAL);
        if (sent < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                io = Io::want_write;
                return false;
            }
            failure_ = std::strerror(errno);  // a reset, say: the peer went away
            io = Io::closed;
            return false;
        }
        out_sent_ += static_cast<std::size_t>(sent);
        progressed = true;
        while (next_record_ < record_ends_.size() &&
               record_ends_[next_record_].first <= out_sent_) {
            written = record_ends_[next_record_++].second;
        }
        if (out_sent_ < out_.size()) {
            io = Io::want_write;  // the socket took what it had room for
            return false;
        }
    }
    out_.clear();
    out_sent_ = 0;
    record_ends_.clear();
    next_record_ = 0;
    return true;
}

Io Connection::handshake() {
    Io io = Io::done;
    bool ignored = false;
    if (!send_out(io, ignored)) {
        return io;
    }
    std::size_t none = 0;
    ERR_clear_error();
    errno = 0;
    const Io shaken = result(SSL_do_handshake(ssl_), none);
    // What the step wrote (its flight, or the alert of a failure) goes out before the wait.
    const bool sent = send_out(io, ignored);
    if (shaken == Io::failed || shaken == Io::closed) {
        return shaken;
    }
    return sent ? shaken : io;
}

Io Connection::read(char* buffer, std::size_t size, std::size_t& count) {
    count = 0;
    // A read may make records of its own (a TLS 1.3 key update's answer, an alert): sent here
    // unless a write is in flight, which sends them after its own in the order made.
    Io io = Io::done;
    bool ignored = false;
    if (!write_active_ && !send_out(io, ignored)) {
        return io;
    }
    // Once per call, not per record: a call that succeeds leaves the queue as it was.
    ERR_clear_error();
    while (io == Io::done && count < size) {
        std::size_t got = 0;
        errno = 0;
        io = result(SSL_read_ex(ssl_, buffer + count, size - count, &got), got);
        count += got;
    }
    read_wants_socket_ = io == Io::want_read;
    if (!write_active_ && out_sent_ < out_.size()) {
        Io sent = Io::done;
        if (!send_out(sent, ignored) && io == Io::want_read) {
            return sent;  // otherwise the next call sends the rest first
        }
    }
    return io;
}

void Connection::begin_write() {
    write_active_ = true;
    written = 0;
    encrypted_ = 0;
}

Io Connection::write(std::string_view data, bool& progressed) {
    for (;;) {
        Io io = Io::done;
        if (!send_out(io, progressed)) {
            return io;
        }
        if (encrypted_ == data.size()) {
            written = encrypted_;
            write_active_ = false;
            return Io::done;
        }
        // One record per call (SSL_MODE_ENABLE_PARTIAL_WRITE), so that each record's end is
        // known: `written` counts whole records only. The error queue is cleared once per
        // batch: a call that succeeds leaves it as it was.
        ERR_clear_error();
        while (encrypted_ < data.size() && out_.size() < kMaxBatch) {
            std::size_t count = 0;
            errno = 0;
            io = result(
                SSL_write_ex(ssl_, data.data() + encrypted_, data.size() - encrypted_, &count),
                count);
            if (io != Io::done) {
                break;
            }
            encrypted_ += count;
            record_ends_.emplace_back(out_.size(), encrypted_);
        }
        if (io != Io::done && (io != Io::want_read || out_.empty())) {
            return io;
        }
    }
}

void Connection::release_idle_memory() {
    if (out_sent_ == out_.size()) {
        std::string{}.swap(out_);
        out_sent_ = 0;
        std::vector<std::pair<std::size_t, std::size_t>>{}.swap(record_ends_);
        next_record_ = 0;
    }
}

Io Connection::result(int returned, std::size_t& count) {
    if (returned == 1) {
        return Io::done;
    }
    count = 0;
    switch (SSL_get_error(ssl_, returned)) {
        case SSL_ERROR_WANT_READ:
            return Io::want_read;
        case SSL_ERROR_WANT_WRITE:
            return Io::want_write;
        case SSL_ERROR_ZERO_RETURN:
            failure_ = "connection closed by peer";
            return Io::closed;
        case SSL_ERROR_SYSCALL:
            if (ERR_peek_error() == 0) {
                // A reset, say: the peer went away.
                failure_ = errno != 0 ? std::strerror(errno) : "connection closed by peer";
                ERR_clear_error();
                return Io::closed;
            }
            break;
        default:
            break;
    }
    failure_ = describe_openssl_error({});
    if (const long verified = SSL_get_verify_result(ssl_); verified != X509_V_OK) {
        failure_ += std::string{" ("} + X509_verify_cert_error_string(verified) + ")";
    }
    return Io::failed;
}

bool Connection::has_buffered_input() const {
    return !read_wants_socket_ && SSL_has_pending(ssl_) == 1;
}

void Connection::send_close_notify() {
    if (SSL_is_init_finished(ssl_) == 1) {
        ERR_clear_error();
        SSL_shutdown(ssl_);
        ERR_clear_error();
        Io ignored = Io::done;
        bool progressed = false;
        send_out(ignored, progressed);  // one try: what the socket does not take is dropped
    }
}

std::string Connection::description() const {
    return std::string{SSL_get_version(ssl_)} + " " + SSL_get_cipher_name(ssl_);
}

bool Connection::peer_certificate_names(std::string_view name) const {
    X509* certificate = SSL_get0_peer_certificate(ssl_);
    return certificate != nullptr &&
           (has_common_name(certificate, name) || has_dns_name(certificate, name));
}

}  // namespace pubsubx::tls
