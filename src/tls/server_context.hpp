// The server's TLS settings as an OpenSSL context, and its reload (SIGHUP). New handshakes use
// the current context; a connection holds the one it started with, so a reload never drops or
// disturbs a live connection.
#pragma once

#include <memory>
#include <string>

namespace asio::ssl {
class context;
}

namespace pubsubx::tls {

struct ServerTlsFiles {
    std::string certificate_chain;  // PEM: the server's certificate, then intermediates
    std::string private_key;        // PEM
    std::string client_ca;          // PEM; empty: client certificates are not asked for
    bool require_client_certificate = false;
};

class ServerContext {
  public:
    // Loads the files; returns null with `error` set when they cannot be used (unreadable, not
    // PEM, a key that does not match the certificate, a broken CA file).
    static std::unique_ptr<ServerContext> load(const ServerTlsFiles& files, std::string& error);

    // For new handshakes. Connections keep theirs alive as long as they need it.
    const std::shared_ptr<asio::ssl::context>& current() const { return current_; }
    // Builds a new context from the same files: on success new handshakes use it; on failure
    // the current one stays and `error` says why.
    bool reload(std::string& error);
    const ServerTlsFiles& files() const { return files_; }

  private:
    ServerContext(ServerTlsFiles files, std::shared_ptr<asio::ssl::context> context)
        : files_(std::move(files)), current_(std::move(context)) {}

    ServerTlsFiles files_;
    std::shared_ptr<asio::ssl::context> current_;
};

}  // namespace pubsubx::tls
