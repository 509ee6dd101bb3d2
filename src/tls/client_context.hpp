// The client's TLS settings (pubsubx-client --tls) as an OpenSSL context, and what each new
// connection must be told: the server name to send (SNI) and to check.
#pragma once

#include <memory>
#include <string>
#include <system_error>

namespace asio::ssl {
class context;
}
struct ssl_st;

namespace pubsubx::tls {

struct ClientTlsOptions {
    std::string ca_file;      // empty: the system's trusted CAs
    std::string certificate;  // with `private_key`: a client certificate for mutual TLS
    std::string private_key;
    bool insecure = false;  // no check of the server's certificate at all
};

// Null with `error` set when a file cannot be used.
std::shared_ptr<asio::ssl::context> make_client_context(const ClientTlsOptions& options,
                                                        std::string& error);

// Before the handshake of a connection to `host`: SNI (for a name, not an address) and, unless
// insecure, the check that the certificate names `host` (a DNS name or an IP address).
void prepare_client_connection(ssl_st* ssl, const std::string& host, bool insecure);

// Why a client handshake failed: OpenSSL's reason, with the certificate check's, e.g.
// "certificate verify failed (hostname mismatch)".
std::string describe_handshake_failure(ssl_st* ssl, const std::error_code& error);

// What --insecure prints on stderr every time.
inline constexpr const char* kInsecureWarning =
    "WARNING: --insecure: the server's certificate is NOT checked. Anyone between this client "
    "and the server can read and change everything, passwords and messages included. Use "
    "--cafile instead.";

}  // namespace pubsubx::tls
