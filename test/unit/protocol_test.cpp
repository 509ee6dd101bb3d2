#include "pubsubx/protocol.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace pubsubx;

namespace {

struct SplitResult {
    std::vector<std::string> frames;
    FrameSplitter::Status status = FrameSplitter::Status::ok;
};

SplitResult split_in_pieces(std::string_view stream, std::vector<std::size_t> cuts,
                            std::size_t max_frame = 1024) {
    FrameSplitter splitter{max_frame};
    SplitResult result;
    std::size_t from = 0;
    cuts.push_back(stream.size());
    for (std::size_t cut : cuts) {
        result.status = splitter.feed(stream.substr(from, cut - from), [&](std::string_view f) {
            result.frames.emplace_back(f);
            return true;
        });
        if (result.status != FrameSplitter::Status::ok) {
            break;
        }
        from = cut;
    }
    return result;
}

}  // namespace

TEST_CASE("find_delimiter finds the first complete delimiter only") {
    CHECK(find_delimiter("abc\n\nx") == 3);
    CHECK(find_delimiter("a\nb\n\n\nx") == 4);
    CHECK(find_delimiter("abc\n\n") == std::string_view::npos);
    CHECK(find_delimiter("\n\nx\n\nx", 1) == 3);
    CHECK(find_delimiter("") == std::string_view::npos);
}

TEST_CASE("the splitter yields the same frames for every split point of a stream") {
    const std::string stream =
        std::string{"CONNECT a\n\nxSUBSCRIBE t\n\nx\n\nxPUBLISH t x y\n\nx"} +
        "PUBLISH t a\nb\n\n\nx";
    const std::vector<std::string> expected{"CONNECT a", "SUBSCRIBE t", "", "PUBLISH t x y",
                                            "PUBLISH t a\nb\n"};
    CHECK(split_in_pieces(stream, {}).frames == expected);
    for (std::size_t cut = 0; cut <= stream.size(); ++cut) {
        CAPTURE(cut);
        CHECK(split_in_pieces(stream, {cut}).frames == expected);
        for (std::size_t second = cut; second <= stream.size(); ++second) {
            CHECK(split_in_pieces(stream, {cut, second}).frames == expected);
        }
    }
}

TEST_CASE("the splitter delivers byte by byte") {
    const std::string stream = "PUBLISH t 1\n\nxPUBLISH t 2\n\nx";
    std::vector<std::size_t> cuts;
    for (std::size_t i = 1; i < stream.size(); ++i) {
        cuts.push_back(i);
    }
    CHECK(split_in_pieces(stream, cuts).frames ==
          std::vector<std::string>{"PUBLISH t 1", "PUBLISH t 2"});
}

TEST_CASE("the splitter enforces the frame limit, complete or not") {
    CHECK(split_in_pieces("12345\n\nx", {}, 5).status == FrameSplitter::Status::ok);
    CHECK(split_in_pieces("123456\n\nx", {}, 5).status == FrameSplitter::Status::frame_too_long);
    CHECK(split_in_pieces("123456\n\nx", {3}, 5).status == FrameSplitter::Status::frame_too_long);
    CHECK(split_in_pieces("123456", {}, 5).status == FrameSplitter::Status::frame_too_long);
    // A full-size frame with part of its delimiter is still fine.
    CHECK(split_in_pieces("12345\n\n", {}, 5).status == FrameSplitter::Status::ok);
    CHECK(split_in_pieces("12345\n\nx", {6}, 5).frames == std::vector<std::string>{"12345"});
}

TEST_CASE("the splitter stops when the callback asks it to") {
    FrameSplitter splitter{100};
    int seen = 0;
    splitter.feed("a\n\nxb\n\nx", [&](std::string_view) {
        ++seen;
        return false;
    });
    CHECK(seen == 1);
}

TEST_CASE("parse_command follows the original parsing rule") {
    struct Row {
        std::string_view frame;
        CommandKind kind;
        bool has_argument;
        std::string_view argument;
        std::string_view data;
    };
    const Row rows[] = {
        {"CONNECT alice", CommandKind::connect, true, "alice", ""},
        {"CONNECT alice secret", CommandKind::connect, true, "alice", "secret"},
        {"CONNECT", CommandKind::connect, false, "", ""},
        {"CONNECT  alice", CommandKind::connect, false, "", "alice"},
        {"SUBSCRIBE news", CommandKind::subscribe, true, "news", ""},
        {"SUBSCRIBE", CommandKind::subscribe, false, "", ""},
        {"UNSUBSCRIBE news", CommandKind::unsubscribe, true, "news", ""},
        {"PUBLISH news hello world", CommandKind::publish, true, "news", "hello world"},
        {"PUBLISH news  two  spaces ", CommandKind::publish, true, "news", " two  spaces "},
        {"PUBLISH news", CommandKind::publish, true, "news", ""},
        {"PUBLISH news ", CommandKind::publish, true, "news", ""},
        {"PUBLISH  x", CommandKind::publish, false, "", "x"},
        {"DISCONNECT", CommandKind::disconnect, false, "", ""},
        {"publish news x", CommandKind::unknown, true, "news", "x"},
        {"HELLO", CommandKind::unknown, false, "", ""},
        {"", CommandKind::unknown, false, "", ""},
    };
    for (const Row& row : rows) {
        CAPTURE(row.frame);
        const Command command = parse_command(row.frame);
        CHECK(command.kind == row.kind);
        CHECK(command.has_argument == row.has_argument);
        CHECK(command.argument == row.argument);
        CHECK(command.data == row.data);
    }
}

TEST_CASE("names are 1 to 64 printable bytes without spaces") {
    CHECK(is_valid_name("a"));
    CHECK(is_valid_name(std::string(64, 'n')));
    CHECK_FALSE(is_valid_name(""));
    CHECK_FALSE(is_valid_name(std::string(65, 'n')));
    CHECK_FALSE(is_valid_name("a b"));
    CHECK_FALSE(is_valid_name("a\nb"));
    CHECK(is_valid_name("\xc3\xa9t\xc3\xa9"));  // UTF-8 is fine
}

TEST_CASE("frames are encoded with the delimiter") {
    std::string out;
    append_frame(out, kConnAccepted);
    append_message_frame(out, "t", "a b");
    append_message_frame(out, "t", "");
    CHECK(out == "OK: Conn accepted\n\nxt a b\n\nxt \n\nx");
}

TEST_CASE("server frames parse as the client needs them") {
    CHECK(parse_server_frame("OK: Conn accepted").kind == ServerFrameKind::accepted);
    const ServerFrame restored = parse_server_frame("RESTORED alice");
    CHECK(restored.kind == ServerFrameKind::restored);
    CHECK(restored.text == "alice");
    const ServerFrame error = parse_server_frame("ERROR: Name already taken");
    CHECK(error.kind == ServerFrameKind::error);
    CHECK(error.text == "ERROR: Name already taken");
    const ServerFrame message = parse_server_frame("news a b c");
    CHECK(message.kind == ServerFrameKind::message);
    CHECK(message.topic == "news");
    CHECK(message.text == "a b c");
    const ServerFrame empty = parse_server_frame("news ");
    CHECK(empty.topic == "news");
    CHECK(empty.text.empty());
}
