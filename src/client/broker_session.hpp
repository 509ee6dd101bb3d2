// One connection of pubsubx-client to a broker, on libpubsubx-client: a pubsubx::Client made for
// each CONNECT and dropped when that connection ends. The client never reconnects on its own (a
// person types CONNECT again; a script's exit code tells its caller of the loss). This keeps the
// state the commands ask about and tells a listener what the library reports, in the CLI's terms.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "pubsubx/client.hpp"
#include "runtime.hpp"

namespace pubsubx::client {

// Every call is made on the runtime's strand.
class SessionListener {
  public:
    virtual void on_accepted() = 0;
    virtual void on_restored(std::vector<std::string> topics) = 0;
    // The broker refused the CONNECT with this frame (`ERROR: Name already taken`).
    virtual void on_refused(std::string_view error_frame) = 0;
    // No connection was made: the network's or the TLS handshake's reason.
    virtual void on_connect_failed(std::string_view reason) = 0;
    virtual void on_message(std::string_view topic, std::string_view data) = 0;
    // The broker refused one of our frames on the live connection, which stays open (`ERROR:
    // Wildcards are not allowed in a PUBLISH topic`). A message whose topic is `ERROR:` arrives
    // here too: the protocol cannot tell the two apart (docs/protocol.md).
    virtual void on_error(std::string_view error_frame) = 0;
    // The messages of one read were handed on (a good moment to flush output).
    virtual void on_read_done() {}
    // The connection ended: `requested` after our DISCONNECT; otherwise the server shut it,
    // perhaps before it answered the CONNECT.
    virtual void on_closed(bool requested) = 0;

  protected:
    ~SessionListener() = default;
};

class BrokerSession {
  public:
    // `close_wait`: see disconnect().
    BrokerSession(Strand strand, SessionListener& listener,
                  std::chrono::steady_clock::duration close_wait);

    // --tls: the connections made from now on.
    void use_tls(TlsOptions tls) { tls_ = std::move(tls); }

    // Connects and sends CONNECT <name> (with the session-resume secret when one is given). The
    // outcome is reported.
    void connect(const std::string& host, std::uint16_t port, const std::string& name,
                 const std::string& secret);
    // While connected. The broker checks the topics: its refusal comes to on_error.
    void publish(std::string_view topic, std::string_view data);
    void subscribe(std::string filter);
    void unsubscribe(std::string filter);
    // Writes everything queued (however long that takes: Client::async_flush), then sends
    // DISCONNECT and reads on until the server closes the connection, at most `close_wait` from
    // then (0: not at all): the protocol has no acks, but
    // the server writes the error frames it owes us before it closes, so this is how a refusal of
    // our last frames is heard. Then on_closed(true).
    void disconnect();
    // Closes at once without DISCONNECT (the broker then keeps us as a lost client); nothing more
    // is reported.
    void abort();

    bool connecting() const { return state_ == State::connecting; }
    bool connected() const { return state_ == State::connected; }
    bool idle() const { return state_ == State::idle; }

  private:
    enum class State { idle, connecting, connected, closing };

    ClientOptions options_for(const std::string& host, std::uint16_t port, const std::string& name,
                              const std::string& secret) const;
    void on_event(const ClientEvent& event);
    void on_connect_failed(const std::error_code& error, const SessionInfo& info);
    // The connection is over: its client goes, and what it still reports is not heard.
    void end();

    Strand strand_;
    SessionListener& listener_;
    std::chrono::milliseconds close_wait_;
    TlsOptions tls_;
    State state_ = State::idle;
    std::unique_ptr<Client> client_;
    // Clients whose connection ended, destroyed in a handler of their own: the one that ended
    // may be below us, reporting its end (client.hpp's rule for destroying a client).
    std::vector<std::unique_ptr<Client>> ended_;
    // Counts the connections: a completion or event of an earlier one is not heard.
    std::uint64_t generation_ = 0;
};

}  // namespace pubsubx::client
