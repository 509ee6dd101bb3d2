#include "runtime.hpp"

#include <unistd.h>

#include <asio/post.hpp>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <thread>

namespace pubsubx::client {

namespace {
constexpr std::string_view kPrompt = "Enter command or (-h): ";
}

Runtime::Runtime()
    : strand_(asio::make_strand(io_.get_executor())),
      work_(io_.get_executor()),
      signals_(strand_, SIGINT, SIGTERM) {}

void Runtime::read_stdin(std::function<void(std::string)> on_line, std::function<void()> on_end) {
    // The reader blocks in read(2) and may outlive run() when the client ends for another
    // reason; it keeps the runtime alive through its shared_ptr, and is detached so that
    // leaving main does not wait for a line that never comes.
    std::thread([self = shared_from_this(), on_line = std::move(on_line),
                 on_end = std::move(on_end)] {
        std::string pending;
        char buffer[4096];
        for (;;) {
            const ssize_t count = ::read(STDIN_FILENO, buffer, sizeof buffer);
            if (count < 0 && errno == EINTR) {
                continue;
            }
            if (count <= 0) {
                break;
            }
            pending.append(buffer, static_cast<std::size_t>(count));
            std::size_t start = 0;
            for (std::size_t end; (end = pending.find('\n', start)) != std::string::npos;
                 start = end + 1) {
                asio::post(self->strand_,
                           [on_line, line = pending.substr(start, end - start)] { on_line(line); });
            }
            pending.erase(0, start);
        }
        if (!pending.empty()) {
            asio::post(self->strand_, [on_line, line = std::move(pending)] { on_line(line); });
        }
        asio::post(self->strand_, on_end);
    }).detach();
}

void Runtime::on_interrupt(std::function<void()> on_signal) {
    signals_.async_wait(
        [this, on_signal = std::move(on_signal)](const std::error_code& error, int) {
            if (!error) {
                // Waiting again first: if on_signal finishes, finish() cancels this wait.
                on_interrupt(on_signal);
                on_signal();
            }
        });
}

int Runtime::run() {
    std::thread io_thread([this] { io_.run(); });
    io_thread.join();
    return exit_code_.load();
}

void Runtime::finish(int exit_code) {
    exit_code_.store(exit_code);
    std::error_code ignored;
    signals_.cancel(ignored);
    work_.reset();
    io_.stop();
}

void Console::before_output() {
    if (prompt_visible_) {
        std::fputc('\n', stdout);  // start below the prompt the user may be typing at
        prompt_visible_ = false;
    }
}

void Console::input_received() {
    if (input_echoed_) {
        prompt_visible_ = false;  // the terminal echoed the Enter
        return;
    }
    before_output();  // nothing echoed the line: end the prompt's line here
    std::fflush(stdout);
}

void Console::line(std::string_view text) {
    before_output();
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);
}

void Console::error_line(std::string_view text) {
    printed_error_ = true;
    if (!errors_to_stderr_) {
        line(text);
        return;
    }
    std::fflush(stdout);
    std::fwrite(text.data(), 1, text.size(), stderr);
    std::fputc('\n', stderr);
    std::fflush(stderr);
}

void Console::prompt() {
    if (!show_prompt_ || prompt_visible_) {
        return;
    }
    std::fwrite(kPrompt.data(), 1, kPrompt.size(), stdout);
    std::fflush(stdout);
    prompt_visible_ = true;
}

}  // namespace pubsubx::client
