#include "connection.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <asio/ssl/context.hpp>
#include <cerrno>
#include <cstring>

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
    return text != nullptr && ASN1_STRING_type(text) == V_ASN1_IA5STRING &&
           same_bytes(ASN1_STRING_get0_data(text), ASN1_STRING_length(text), name);
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
    SSL_set_fd(ssl_, fd);
    SSL_set_accept_state(ssl_);
}

Io Connection::handshake() {
    std::size_t ignored = 0;
    ERR_clear_error();
    errno = 0;
    return result(SSL_do_handshake(ssl_), ignored);
}

Io Connection::read(char* buffer, std::size_t size, std::size_t& count) {
    ERR_clear_error();
    errno = 0;
    const Io io = result(SSL_read_ex(ssl_, buffer, size, &count), count);
    read_wants_socket_ = io == Io::want_read;
    return io;
}

Io Connection::write(const char* data, std::size_t size, std::size_t& count) {
    ERR_clear_error();
    errno = 0;
    return result(SSL_write_ex(ssl_, data, size, &count), count);
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
