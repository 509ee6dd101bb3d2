#include "server_context.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <asio/ssl/context.hpp>

#include "openssl_errors.hpp"

namespace pubsubx::tls {

namespace {

constexpr std::size_t kReadAheadBytes = 64 * 1024;

// `what` and OpenSSL's reason, e.g. "cannot load the private key from k.pem: key values
// mismatch".
bool failed(std::string& error, const std::string& what, const std::error_code& code) {
    error = what + ": " + describe_openssl_error(code);
    return false;
}

bool configure(asio::ssl::context& context, const ServerTlsFiles& files, std::string& error) {
    SSL_CTX* handle = context.native_handle();
    // TLS 1.2 and 1.3 only; no renegotiation (a client could make the server redo the costly
    // part at will), no compression (CRIME).
    SSL_CTX_set_min_proto_version(handle, TLS1_2_VERSION);
    SSL_CTX_set_options(
        handle, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    // AEAD suites with forward secrecy only (Mozilla's "intermediate" list for TLS 1.2);
    // AES-128-GCM first, the fastest with AES-NI and as strong as needed.
    SSL_CTX_set_ciphersuites(handle,
                             "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
                             "TLS_CHACHA20_POLY1305_SHA256");
    SSL_CTX_set_cipher_list(handle,
                            "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                            "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                            "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305");
    // A peer that closes TCP without close_notify has simply gone, as on the plain port: frames
    // are self-delimiting, so a cut stream cannot pass for a shorter message.
    SSL_CTX_set_options(handle, SSL_OP_IGNORE_UNEXPECTED_EOF);
    // An idle connection gives its read and write buffers (about 34 KB) back to OpenSSL's
    // allocator; partial writes let the session advance its write deadline record by record.
    SSL_CTX_set_mode(handle, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                                 SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    // One read system call takes in every record that has arrived, not one header and one
    // record at a time, up to kReadAheadBytes (OpenSSL's default holds one record: one
    // system call per record). The buffer is given back when empty (RELEASE_BUFFERS above).
    SSL_CTX_set_read_ahead(handle, 1);
    SSL_CTX_set_default_read_buffer_len(handle, kReadAheadBytes);
    // No session resumption: no cache that grows with every client, no tickets to sign, and a
    // reloaded certificate is seen by every new connection.
    SSL_CTX_set_session_cache_mode(handle, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(handle, 0);
    SSL_CTX_set_options(handle, SSL_OP_NO_TICKET);
    std::error_code code;
    context.use_certificate_chain_file(files.certificate_chain, code);
    if (code) {
        return failed(error, "cannot load the certificate chain from " + files.certificate_chain,
                      code);
    }
    context.use_private_key_file(files.private_key, asio::ssl::context::pem, code);
    if (code &&
        ERR_GET_REASON(static_cast<unsigned long>(code.value())) == X509_R_KEY_VALUES_MISMATCH) {
        error = "the private key " + files.private_key + " does not match the certificate " +
                files.certificate_chain;
        return false;
    }
    if (code) {
        return failed(error, "cannot load the private key from " + files.private_key, code);
    }
    ERR_clear_error();
    if (SSL_CTX_check_private_key(handle) != 1) {
        error = "the private key " + files.private_key + " does not match the certificate " +
                files.certificate_chain + ": " + describe_openssl_error({});
        return false;
    }
    if (files.client_ca.empty()) {
        return true;
    }
    context.load_verify_file(files.client_ca, code);
    if (code) {
        return failed(error, "cannot load the client CA from " + files.client_ca, code);
    }
    // The CA names go into the certificate request, so a client with several certificates
    // picks the right one.
    if (STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(files.client_ca.c_str());
        names != nullptr) {
        SSL_CTX_set_client_CA_list(handle, names);
    }
    // With a CA but without --tls-require-client-cert a certificate is optional, but checked
    // when given. An expired or untrusted one fails the handshake either way.
    context.set_verify_mode(files.require_client_certificate
                                ? asio::ssl::verify_peer | asio::ssl::verify_fail_if_no_peer_cert
                                : asio::ssl::verify_peer);
    return true;
}

}  // namespace

std::unique_ptr<ServerContext> ServerContext::load(const ServerTlsFiles& files,
                                                   std::string& error) {
    auto context = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
    if (!configure(*context, files, error)) {
        return nullptr;
    }
    return std::unique_ptr<ServerContext>(new ServerContext(files, std::move(context)));
}

bool ServerContext::reload(std::string& error) {
    auto context = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
    if (!configure(*context, files_, error)) {
        return false;
    }
    current_ = std::move(context);
    return true;
}

}  // namespace pubsubx::tls
