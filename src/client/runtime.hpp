// The client's threads: the io_context runs on its own thread; a second thread reads standard
// input line by line and posts each line into the strand that owns the connection.
#pragma once

#include <asio/any_io_executor.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/signal_set.hpp>
#include <asio/strand.hpp>
#include <atomic>
#include <functional>
#include <memory>
#include <string>

namespace pubsubx::client {

using Strand = asio::strand<asio::any_io_executor>;

class Runtime : public std::enable_shared_from_this<Runtime> {
  public:
    Runtime();

    Strand& strand() { return strand_; }
    // Calls on_line for every line of standard input, then on_end once, all on the strand.
    void read_stdin(std::function<void(std::string)> on_line, std::function<void()> on_end);
    // Calls on_signal on the strand for every SIGINT and SIGTERM (a second one may insist).
    void on_interrupt(std::function<void()> on_signal);
    // Runs the io_context on its own thread until finish(); returns the exit code.
    int run();
    // Ends run() with this exit code; call on the strand.
    void finish(int exit_code);

  private:
    asio::io_context io_{1};
    Strand strand_;
    asio::executor_work_guard<asio::io_context::executor_type> work_;
    asio::signal_set signals_;
    std::atomic<int> exit_code_{0};
};

// All output of a client, written on the strand. Lines are flushed at once for terminals and
// pipes alike; a prompt, when enabled, is redrawn after anything printed below it.
class Console {
  public:
    // `input_echoed`: input comes from a terminal, which echoes each line and its Enter.
    Console(bool show_prompt, bool errors_to_stderr, bool input_echoed = false)
        : show_prompt_(show_prompt),
          errors_to_stderr_(errors_to_stderr),
          input_echoed_(input_echoed) {}

    void line(std::string_view text);        // on stdout
    void error_line(std::string_view text);  // on stdout or, for the one-liners, stderr
    void prompt();
    // A line was read: what answers it starts on a fresh line below the prompt.
    void input_received();
    bool shows_prompt() const { return show_prompt_; }
    bool printed_error() const { return printed_error_; }

  private:
    void before_output();

    bool show_prompt_;
    bool errors_to_stderr_;
    bool input_echoed_;
    bool prompt_visible_ = false;
    bool printed_error_ = false;
};

}  // namespace pubsubx::client
