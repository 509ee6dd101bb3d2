#include "client_context.hpp"

#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <asio/ip/address.hpp>
#include <asio/ssl/context.hpp>

#include "openssl_errors.hpp"

namespace pubsubx::tls {

std::shared_ptr<asio::ssl::context> make_client_context(const ClientTlsOptions& options,
                                                        std::string& error) {
    auto context = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
    SSL_CTX* handle = context->native_handle();
    SSL_CTX_set_min_proto_version(handle, TLS1_2_VERSION);
    SSL_CTX_set_options(
        handle, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_IGNORE_UNEXPECTED_EOF);
    std::error_code code;
    if (options.insecure) {
        context->set_verify_mode(asio::ssl::verify_none);
    } else {
        context->set_verify_mode(asio::ssl::verify_peer);
        if (options.ca_file.empty()) {
            context->set_default_verify_paths(code);
        } else {
            context->load_verify_file(options.ca_file, code);
        }
        if (code) {
            error = "cannot load the CA certificates" +
                    (options.ca_file.empty() ? std::string{} : " from " + options.ca_file) + ": " +
                    describe_openssl_error(code);
            return nullptr;
        }
    }
    if (!options.certificate.empty()) {
        context->use_certificate_chain_file(options.certificate, code);
        if (code) {
            error = "cannot load the certificate from " + options.certificate + ": " +
                    describe_openssl_error(code);
            return nullptr;
        }
        context->use_private_key_file(options.private_key, asio::ssl::context::pem, code);
        if (code) {
            error = "cannot load the private key from " + options.private_key + ": " +
                    describe_openssl_error(code);
            return nullptr;
        }
    }
    return context;
}

void prepare_client_connection(ssl_st* ssl, const std::string& host, bool insecure) {
    std::error_code not_address;
    asio::ip::make_address(host, not_address);
    const bool is_address = !not_address;
    if (!is_address) {
        SSL_set_tlsext_host_name(ssl, host.c_str());
    }
    if (insecure) {
        return;
    }
    // OpenSSL checks the name during the handshake: a mismatch fails it with "hostname
    // mismatch" or "IP address mismatch" as the reason.
    if (is_address) {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host.c_str());
    } else {
        SSL_set1_host(ssl, host.c_str());
    }
}

}  // namespace pubsubx::tls

namespace pubsubx::tls {

std::string describe_handshake_failure(ssl_st* ssl, const std::error_code& error) {
    std::string reason = describe_openssl_error(error);
    if (const long verified = SSL_get_verify_result(ssl); verified != X509_V_OK) {
        reason += std::string{" ("} + X509_verify_cert_error_string(verified) + ")";
    }
    return reason;
}

}  // namespace pubsubx::tls
