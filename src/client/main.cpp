// pubsubx-client: the interactive client (no subcommand) and the `pub`/`sub` one-liners.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <asio/post.hpp>
#include <chrono>
#include <cstdio>

#include "command.hpp"
#include "interactive.hpp"
#include "oneliners.hpp"
#include "pubsubx/protocol.hpp"
#include "pubsubx/version.hpp"
#include "runtime.hpp"
#include "tls/client_context.hpp"

namespace {

constexpr int kUsageError = 2;

std::string check_secret(const std::string& secret) {
    return pubsubx::is_valid_secret(secret)
               ? std::string{}
               : std::string{"a secret is 1 to 128 bytes, no spaces or control characters"};
}

std::chrono::steady_clock::duration to_duration(double seconds) {
    return std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::chrono::duration<double>(seconds));
}

// One setting, given before or after `pub`/`sub`, for every wait on the server's answer: to a
// CONNECT, and the close that answers a DISCONNECT. The clients read on until that close because
// the protocol has no acks: the error frames for our last frames come before it.
constexpr std::string_view kCloseWaitHelp =
    "after DISCONNECT, for the server's close, which comes after the error frames still owed (a "
    "refused PUBLISH or SUBSCRIBE); 0: do not wait for the close";

void add_answer_timeout_option(CLI::App& command, double& seconds, const std::string& help) {
    command.add_option("--answer-timeout", seconds, help)
        ->check(CLI::Range(0.0, 86400.0))
        ->capture_default_str();
}

void add_endpoint_options(CLI::App& command, pubsubx::client::Endpoint& endpoint) {
    command.add_option("-p,--port", endpoint.port, "Broker port")
        ->required()
        ->check(CLI::Range(1, 65535));
    command.add_option("-H,--host", endpoint.host, "Broker host")->capture_default_str();
    command
        .add_option("-n,--name", endpoint.name,
                    "Client name (default: a unique one); with a fixed name a restarted "
                    "client gets the messages it missed")
        ->check([](const std::string& name) {
            return pubsubx::is_valid_name(name) ? std::string{}
                                                : std::string{"a name is 1 to 64 bytes, no spaces"};
        });
    command
        .add_option("-s,--secret", endpoint.secret,
                    "Session-resume secret: only a client with the same secret can resume "
                    "this name's session")
        ->check(check_secret);
}

// Given to the program and to `pub` and `sub`, so they may come before or after the subcommand.
void add_tls_options(CLI::App& command, pubsubx::TlsOptions& tls) {
    command.add_flag("--tls", tls.enabled,
                     "Connect over TLS, checking the server's certificate and host name");
    command
        .add_option("--cafile", tls.ca_file,
                    "With --tls: CA certificates (PEM) to trust instead of the system's")
        ->check(CLI::ExistingFile);
    command
        .add_option("--cert", tls.certificate,
                    "With --tls: a client certificate (PEM) for servers that ask for one")
        ->check(CLI::ExistingFile);
    command.add_option("--key", tls.private_key, "With --tls and --cert: its private key")
        ->check(CLI::ExistingFile);
    command.add_flag("--insecure", tls.insecure,
                     "With --tls: do NOT check the server's certificate (testing only: anyone "
                     "on the path can read and change the traffic)");
}

void check_tls_choice(const pubsubx::TlsOptions& tls) {
    if (!tls.enabled && (!tls.ca_file.empty() || !tls.certificate.empty() ||
                         !tls.private_key.empty() || tls.insecure)) {
        throw CLI::ValidationError("--cafile, --cert, --key and --insecure need --tls");
    }
    if (tls.certificate.empty() != tls.private_key.empty()) {
        throw CLI::ValidationError("--cert and --key go together");
    }
    if (tls.insecure && !tls.ca_file.empty()) {
        throw CLI::ValidationError("--insecure checks no certificate: --cafile makes no sense");
    }
}

// The library makes its TLS context at each connect from these files. A context made here, and
// thrown away, checks them at the start: a bad file stops the client before its first CONNECT,
// with OpenSSL's reason on stderr.
bool tls_files_usable(const pubsubx::TlsOptions& tls) {
    std::string error;
    if (pubsubx::tls::make_client_context(
            {tls.ca_file, tls.certificate, tls.private_key, tls.insecure}, error) == nullptr) {
        std::fprintf(stderr, "ERROR: %s\n", error.c_str());
        return false;
    }
    return true;
}

int run_interactive(const std::string& host, const std::string& secret, bool force_prompt,
                    double answer_timeout_seconds, const pubsubx::TlsOptions& tls) {
    using namespace pubsubx::client;
    auto runtime = std::make_shared<Runtime>();
    const bool terminal = isatty(STDIN_FILENO) == 1;
    Console console{force_prompt || terminal, false, terminal};
    InteractiveClient client{*runtime, console, host, secret, to_duration(answer_timeout_seconds)};
    client.use_tls(tls);
    runtime->on_interrupt([&client] { client.interrupt(); });
    runtime->read_stdin([&client](std::string line) { client.submit_line(std::move(line)); },
                        [&client] { client.end_of_input(); });
    asio::post(runtime->strand(), [&console] { console.prompt(); });
    return runtime->run();
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{
        "PubSubX client. Without a subcommand it reads commands from standard input "
        "(type -h for the list); `pub` and `sub` are one-liners for scripts."};
    app.set_version_flag("--version", std::string{"pubsubx-client "} + pubsubx::kVersion);
    std::string host = "localhost";
    bool force_prompt = false;
    app.add_option("--host", host, "Host for CONNECT <port> <name>")->capture_default_str();
    std::string secret;
    app.add_option("--secret", secret,
                   "Secret sent with every CONNECT that names none (CONNECT <port> <name> "
                   "<secret>); only the same secret can resume the session")
        ->check(check_secret);
    app.add_flag("--prompt", force_prompt, "Show the prompt even when input is not a terminal");
    double answer_timeout = 10.0;
    const std::string connect_wait_help =
        "Seconds a script whose input has ended still waits for the answer to its CONNECT "
        "before giving up (exit code 1), and any client waits ";
    add_answer_timeout_option(app, answer_timeout, connect_wait_help + std::string{kCloseWaitHelp});
    pubsubx::TlsOptions tls;
    add_tls_options(app, tls);

    pubsubx::client::PublishOptions publish;
    std::string message;
    bool lines = false;
    auto* pub = app.add_subcommand("pub", "Publish one message (-m) or each line of stdin (-l)");
    add_endpoint_options(*pub, publish.endpoint);
    add_tls_options(*pub, tls);
    add_answer_timeout_option(*pub, answer_timeout,
                              "Seconds to wait " + std::string{kCloseWaitHelp});
    pub->add_option("-t,--topic", publish.topic, "Topic")->required();
    auto* message_option = pub->add_option("-m,--message", message, "The message");
    auto* lines_option = pub->add_flag("-l,--lines", lines, "Publish each line of stdin");
    message_option->excludes(lines_option);

    pubsubx::client::SubscribeOptions subscribe;
    std::uint64_t count = 0;
    auto* sub = app.add_subcommand("sub", "Print the messages of one or more topics");
    add_endpoint_options(*sub, subscribe.endpoint);
    add_tls_options(*sub, tls);
    add_answer_timeout_option(*sub, answer_timeout,
                              "Seconds to wait " + std::string{kCloseWaitHelp});
    sub->add_option("-t,--topic", subscribe.topics, "Topic (repeat for more)")->required();
    auto* count_option = sub->add_option("-C,--count", count, "Exit after this many messages")
                             ->check(CLI::PositiveNumber);
    sub->add_flag("-v,--verbose", subscribe.with_topic, "Print `topic data`");

    try {
        app.parse(argc, argv);
        if (pub->parsed() && message_option->count() == 0 && !lines) {
            throw CLI::ValidationError("pub needs -m MESSAGE or -l");
        }
        const auto no_space = [](const std::string& topic) {
            return !topic.empty() && topic.find(' ') == std::string::npos;
        };
        if (pub->parsed() && !no_space(publish.topic)) {
            throw CLI::ValidationError("a topic is not empty and has no spaces");
        }
        for (const std::string& topic : subscribe.topics) {
            if (!no_space(topic)) {
                throw CLI::ValidationError("a topic is not empty and has no spaces");
            }
        }
        check_tls_choice(tls);
    } catch (const CLI::ParseError& error) {
        const int code = app.exit(error);
        return code == 0 ? 0 : kUsageError;
    }

    if (tls.enabled) {
        if (tls.insecure) {
            std::fprintf(stderr, "%s\n", pubsubx::tls::kInsecureWarning);
        }
        if (!tls_files_usable(tls)) {
            return 1;
        }
    }
    for (auto* endpoint : {&publish.endpoint, &subscribe.endpoint}) {
        endpoint->answer_timeout = to_duration(answer_timeout);
        endpoint->tls = tls;
    }
    if (pub->parsed()) {
        if (message_option->count() > 0) {
            publish.message = message;
        }
        return pubsubx::client::run_publish(publish);
    }
    if (sub->parsed()) {
        if (count_option->count() > 0) {
            subscribe.count = count;
        }
        return pubsubx::client::run_subscribe(subscribe);
    }
    return run_interactive(host, secret, force_prompt, answer_timeout, tls);
}
