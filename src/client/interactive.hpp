// The interactive client: typed commands in, `INFO:`/`ERROR:` lines and messages out, in the
// original PubSubX client's words. Lives on the runtime's strand.
#pragma once

#include <asio/steady_timer.hpp>
#include <chrono>
#include <deque>
#include <set>
#include <string>

#include "broker_session.hpp"
#include "command.hpp"
#include "runtime.hpp"

namespace pubsubx::client {

class InteractiveClient final : public SessionListener {
  public:
    // `answer_timeout`: how long a script whose input has ended still waits for the answer
    // to its CONNECT before giving up (a person ends the wait with Ctrl-C or Ctrl-D), and how
    // long a DISCONNECT waits for the server to close (see BrokerSession::disconnect).
    InteractiveClient(Runtime& runtime, Console& console, std::string default_host,
                      std::string default_secret = {},
                      std::chrono::steady_clock::duration answer_timeout = std::chrono::seconds{
                          10});

    // --tls: every CONNECT goes over TLS.
    void use_tls(TlsOptions tls) { session_.use_tls(std::move(tls)); }

    // Both are called on the strand.
    void submit_line(std::string line);
    // End of input: a script's remaining lines run to the end (a CONNECT still waiting is
    // given up after the answer timeout); at the prompt it is Ctrl-D, a person leaving, and
    // quits like interrupt(). Then disconnect if connected, and finish.
    void end_of_input();
    // Ctrl-C or SIGTERM: quit now. Lines not yet run are dropped and a CONNECT waiting for
    // its answer is given up. A connection is left with DISCONNECT; an interrupt while a
    // DISCONNECT is being written (a second Ctrl-C, say) closes at once.
    void interrupt();

    void on_accepted() override;
    void on_restored(std::vector<std::string> topics) override;
    void on_refused(std::string_view error_frame) override;
    void on_message(std::string_view topic, std::string_view data) override;
    void on_error(std::string_view error_frame) override;
    void on_connect_failed(std::string_view reason) override;
    void on_closed(bool requested) override;

  private:
    // Runs queued lines until one has to wait for the server (CONNECT, DISCONNECT).
    void run_queued();
    void execute(const UserCommand& command);
    bool waiting_for_server() const { return !session_.idle() && !session_.connected(); }
    // Leaves with DISCONNECT, reading on until the server's close: the error frames for the
    // last commands (a refused PUBLISH, say) come before it, and a script's exit code counts
    // them.
    void disconnect() { session_.disconnect(); }
    void command_done();
    // Draws the prompt again below output that came unasked (a message, an error frame).
    void prompt_if_idle();

    Runtime& runtime_;
    Console& console_;
    std::string default_host_;
    std::string default_secret_;  // --secret: sent by a CONNECT that names none
    BrokerSession session_;
    std::deque<std::string> lines_;
    std::set<std::string> topics_;  // what we are subscribed to, for the INFO lines
    std::string connect_target_;    // host:port of the CONNECT under way, for error lines
    std::chrono::steady_clock::duration answer_timeout_;
    asio::steady_timer give_up_timer_;  // armed when input ends while a CONNECT waits
    bool input_ended_ = false;
    bool finished_ = false;
};

}  // namespace pubsubx::client
