#include "interactive.hpp"

namespace pubsubx::client {

namespace {
constexpr std::string_view kNotConnected =
    "ERROR: Not connected: only CONNECT <port> <name> is accepted (see -h)";
}

InteractiveClient::InteractiveClient(Runtime& runtime, Console& console, std::string default_host,
                                     std::string default_secret,
                                     std::chrono::steady_clock::duration answer_timeout)
    : runtime_(runtime),
      console_(console),
      default_host_(std::move(default_host)),
      default_secret_(std::move(default_secret)),
      session_(runtime.strand(), *this, answer_timeout),
      answer_timeout_(answer_timeout),
      give_up_timer_(runtime.strand()) {}

void InteractiveClient::submit_line(std::string line) {
    if (input_ended_) {
        return;
    }
    console_.input_received();
    lines_.push_back(std::move(line));
    run_queued();
}

void InteractiveClient::end_of_input() {
    if (input_ended_) {
        return;
    }
    if (console_.shows_prompt()) {
        interrupt();
        return;
    }
    input_ended_ = true;
    // A script that ends while a CONNECT waits still gets its answer, but not forever: a
    // server that accepts and never answers would otherwise keep it running.
    give_up_timer_.expires_after(answer_timeout_);
    give_up_timer_.async_wait([this](const std::error_code& error) {
        if (!error && waiting_for_server() && !finished_) {
            interrupt();
        }
    });
    run_queued();
}

void InteractiveClient::interrupt() {
    input_ended_ = true;
    lines_.clear();
    if (session_.connecting()) {
        console_.error_line("ERROR: No answer from " + connect_target_ + " to CONNECT; gave up");
    }
    if (!session_.connected()) {
        session_.abort();
    }
    run_queued();
}

void InteractiveClient::run_queued() {
    while (!lines_.empty() && !waiting_for_server()) {
        const std::string line = std::move(lines_.front());
        lines_.pop_front();
        execute(parse_user_command(line));
    }
    if (waiting_for_server() || !lines_.empty()) {
        return;
    }
    if (!input_ended_) {
        console_.prompt();
        return;
    }
    if (session_.connected()) {
        disconnect();  // leave cleanly; on_closed finishes
        return;
    }
    if (!finished_) {
        finished_ = true;
        give_up_timer_.cancel();
        // A script whose commands failed tells its caller so.
        runtime_.finish(!console_.shows_prompt() && console_.printed_error() ? 1 : 0);
    }
}

void InteractiveClient::execute(const UserCommand& command) {
    switch (command.kind) {
        case CommandKind::empty:
            return;
        case CommandKind::help:
            console_.line(
                std::string_view{kHelpText}.substr(0, std::string_view{kHelpText}.size() - 1));
            return;
        case CommandKind::invalid:
            console_.error_line(command.error);
            return;
        case CommandKind::connect: {
            if (!session_.idle()) {
                console_.error_line("ERROR: Already connected (DISCONNECT first)");
                return;
            }
            const std::string host = command.host.empty() ? default_host_ : command.host;
            connect_target_ = host + ":" + std::to_string(command.port);
            session_.connect(host, command.port, command.name,
                             command.secret.empty() ? default_secret_ : command.secret);
            return;
        }
        default:
            break;
    }
    if (!session_.connected()) {
        console_.error_line(kNotConnected);
        return;
    }
    switch (command.kind) {
        case CommandKind::disconnect:
            disconnect();
            return;
        case CommandKind::publish:
            session_.publish(command.topic, command.data);
            return;
        case CommandKind::subscribe:
            if (!topics_.insert(command.topic).second) {
                console_.line("INFO: Already subscribed to '" + command.topic + "'");
                return;
            }
            session_.subscribe(command.topic);
            return;
        case CommandKind::unsubscribe:
            if (topics_.erase(command.topic) == 0) {
                console_.line("INFO: Was not subscribed to '" + command.topic + "'");
                return;
            }
            session_.unsubscribe(command.topic);
            return;
        default:
            return;
    }
}

void InteractiveClient::command_done() {
    run_queued();
}

void InteractiveClient::on_accepted() {
    topics_.clear();
    console_.line("INFO: Connection successfully established");
    command_done();
}

void InteractiveClient::on_restored(std::vector<std::string> topics) {
    topics_ = std::set<std::string>(topics.begin(), topics.end());
    console_.line("INFO: Connection restored");
    std::string list;
    for (const std::string& topic : topics) {
        list += list.empty() ? "" : " ";
        list += topic;
    }
    console_.line("INFO: Restored subscriptions: " + (list.empty() ? "(none)" : list));
    command_done();
}

void InteractiveClient::on_refused(std::string_view error_frame) {
    console_.error_line(error_frame);
    command_done();
}

void InteractiveClient::on_message(std::string_view topic, std::string_view data) {
    std::string line{"Topic: "};
    line.append(topic).append("  Data: ").append(data);
    console_.line(line);
    prompt_if_idle();
}

void InteractiveClient::on_error(std::string_view error_frame) {
    console_.error_line(error_frame);
    prompt_if_idle();
}

void InteractiveClient::prompt_if_idle() {
    if (lines_.empty() && !waiting_for_server() && !input_ended_) {
        console_.prompt();
    }
}

void InteractiveClient::on_connect_failed(std::string_view reason) {
    console_.error_line("ERROR: Cannot connect to " + connect_target_ + ": " + std::string{reason});
    command_done();
}

void InteractiveClient::on_closed(bool requested) {
    topics_.clear();
    if (requested) {
        console_.line("INFO: Disconnected");
    } else {
        console_.error_line("ERROR: Server shut the connection, all subscriptions are lost");
    }
    command_done();
}

}  // namespace pubsubx::client
