#include "pubsubx/log.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <csignal>
#include <string>
#include <vector>

using namespace pubsubx;

namespace {

std::string escaped(std::string_view text) {
    std::string out;
    append_escaped(out, text);
    return out;
}

// A pipe whose write end does not block, as the server makes its log when it is a pipe.
struct NonBlockingPipe {
    NonBlockingPipe() {
        REQUIRE(pipe2(fds, O_CLOEXEC) == 0);
        REQUIRE(fcntl(fds[1], F_SETFL, fcntl(fds[1], F_GETFL) | O_NONBLOCK) == 0);
        fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK);
    }
    ~NonBlockingPipe() {
        close_reader();
        close(fds[1]);
    }
    std::string read_all() {
        std::string out;
        char buffer[65536];
        ssize_t count = 0;
        while ((count = read(fds[0], buffer, sizeof buffer)) > 0) {
            out.append(buffer, static_cast<std::size_t>(count));
        }
        return out;
    }
    void close_reader() {
        if (fds[0] >= 0) {
            close(fds[0]);
            fds[0] = -1;
        }
    }
    int fds[2] = {-1, -1};
};

}  // namespace

TEST_CASE("Escaped keeps printable UTF-8 and escapes everything that could forge a line") {
    CHECK(escaped("news/sport") == "news/sport");
    CHECK(escaped("caf\xc3\xa9 \xf0\x9f\x98\x80") == "caf\xc3\xa9 \xf0\x9f\x98\x80");
    CHECK(escaped("a\nINFO: Client 'root' added") == "a\\nINFO: Client 'root' added");
    CHECK(escaped("a\r\tb") == "a\\r\\tb");
    CHECK(escaped("\x1b[2J\x1b]0;owned\x07") == "\\x1B[2J\\x1B]0;owned\\x07");
    CHECK(escaped(std::string_view{"a\0b", 3}) == "a\\x00b");
    CHECK(escaped("\x7f") == "\\x7F");
    CHECK(escaped("\xc2\x9b"
                  "31m") ==
          "\\xC2\\x9B"
          "31m");                          // C1 CSI
    CHECK(escaped("a\\nb") == "a\\\\nb");  // a backslash cannot fake an escape
    CHECK(escaped("\xff\xfe") == "\\xFF\\xFE");
    CHECK(escaped("\xc0\xaf") == "\\xC0\\xAF");           // overlong
    CHECK(escaped("\xed\xa0\x80") == "\\xED\\xA0\\x80");  // surrogate
    CHECK(escaped("\xe2\x82"
                  "x\xe2\x82\xac") == "\\xE2\\x82x\xe2\x82\xac");  // truncated, then valid
    CHECK(escaped("") == "");
    for (int byte = 0; byte < 256; ++byte) {
        const std::string out = escaped(std::string(1, static_cast<char>(byte)));
        CHECK(out.find('\n') == std::string::npos);
        CHECK(out.find('\x1b') == std::string::npos);
    }
}

TEST_CASE("the logger renders Escaped parts and writes whole lines") {
    NonBlockingPipe log;
    Logger logger{LogLevel::info, log.fds[1]};
    logger.info("Client 'c' subscribed to '", Escaped{"x\nERROR: forged"}, "' ", 42);
    CHECK(log.read_all() == "INFO: Client 'c' subscribed to 'x\\nERROR: forged' 42\n");
    CHECK(logger.lines_dropped() == 0);
}

TEST_CASE("a full log pipe neither blocks nor tears lines; what it cannot take is counted") {
    NonBlockingPipe log;
    Logger logger{LogLevel::info, log.fds[1]};
    constexpr int kLines = 3000;
    std::string received;
    for (int i = 0; i < kLines; ++i) {
        // Lines of 5 to 9 KB, over PIPE_BUF, so that the pipe takes some of them in part.
        logger.info("line ", i, " ", std::string(5000 + 97 * (i % 41), 'x'), " end ", i);
        if (i % 700 == 699) {
            received += log.read_all();  // a reader that reads now and then
        }
    }
    for (int round = 0; round < 10 && logger.pending_bytes() > 0; ++round) {
        received += log.read_all();
        logger.flush(std::chrono::milliseconds{10});
    }
    received += log.read_all();
    CHECK(logger.pending_bytes() == 0);
    CHECK(logger.lines_dropped() > 0);
    int whole = 0;
    int previous = -1;
    std::size_t from = 0;
    while (from < received.size()) {
        const std::size_t end = received.find('\n', from);
        REQUIRE(end != std::string::npos);
        const std::string line = received.substr(from, end - from);
        const int number = std::stoi(line.substr(std::string_view{"INFO: line "}.size()));
        CHECK(number > previous);
        CHECK(line.ends_with(" end " + std::to_string(number)));
        previous = number;
        ++whole;
        from = end + 1;
    }
    CHECK(whole + static_cast<int>(logger.lines_dropped()) == kLines);
}

TEST_CASE("a log whose reader is gone drops and counts lines") {
    // As in the server, which ignores SIGPIPE: the write fails with EPIPE instead.
    const auto previous = std::signal(SIGPIPE, SIG_IGN);
    NonBlockingPipe log;
    log.close_reader();
    Logger logger{LogLevel::info, log.fds[1]};
    logger.info("nobody reads this");
    logger.error("nor this");
    CHECK(logger.lines_dropped() == 2);
    std::signal(SIGPIPE, previous);
}
