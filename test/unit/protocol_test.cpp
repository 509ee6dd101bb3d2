#include "pubsubx/protocol.hpp"

#include <doctest/doctest.h>

#include <cstdint>
#include <ios>
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

// Every position of each of the two spaces gives what the original rule gives.
TEST_CASE("parse_command splits at the first two spaces wherever they are") {
    for (std::size_t word = 1; word <= 80; ++word) {
        for (std::size_t argument = 1; argument <= 80; argument += 7) {
            const std::string command(word, 'C');
            const std::string topic(argument, 't');
            const std::string frame = command + " " + topic + " da ta";
            const Command parsed = parse_command(frame);
            CAPTURE(word);
            CAPTURE(argument);
            CHECK(parsed.kind == CommandKind::unknown);
            CHECK(parsed.argument == topic);
            CHECK(parsed.data == "da ta");
            CHECK(parse_command(command + " " + topic).data.empty());
            CHECK(parse_command(command + " " + topic).argument == topic);
        }
    }
    const std::string high_bytes = "PUBLISH \xa0\xff\x80 x";
    CHECK(parse_command(high_bytes).argument == "\xa0\xff\x80");
    CHECK(parse_command("PUBLISH" + std::string(100, 'x')).kind == CommandKind::unknown);
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

namespace {

// The UTF-8 encoding of a code point, without any check (so it can build surrogates).
std::string encode_utf8(char32_t code_point) {
    std::string out;
    const auto byte = [&](unsigned value) { out.push_back(static_cast<char>(value)); };
    if (code_point < 0x80) {
        byte(code_point);
    } else if (code_point < 0x800) {
        byte(0xc0 | (code_point >> 6));
        byte(0x80 | (code_point & 0x3f));
    } else if (code_point < 0x10000) {
        byte(0xe0 | (code_point >> 12));
        byte(0x80 | ((code_point >> 6) & 0x3f));
        byte(0x80 | (code_point & 0x3f));
    } else {
        byte(0xf0 | (code_point >> 18));
        byte(0x80 | ((code_point >> 12) & 0x3f));
        byte(0x80 | ((code_point >> 6) & 0x3f));
        byte(0x80 | (code_point & 0x3f));
    }
    return out;
}

bool is_control(char32_t code_point) {
    return code_point < 0x20 || (code_point >= 0x7f && code_point <= 0x9f);
}

}  // namespace

TEST_CASE("UTF-8 text without controls: every code point, encoded, at every alignment") {
    for (char32_t code_point = 0; code_point <= 0x10ffff; ++code_point) {
        const bool surrogate = code_point >= 0xd800 && code_point <= 0xdfff;
        const bool expected = !surrogate && !is_control(code_point);
        const std::string encoded = encode_utf8(code_point);
        if (is_utf8_without_controls(encoded) != expected) {
            FAIL_CHECK("U+" << std::hex << static_cast<std::uint32_t>(code_point));
        }
    }
    // Inside long ASCII text too, so that the 8-byte fast path meets it at every offset.
    for (std::size_t at = 0; at < 24; ++at) {
        for (const std::string_view inner : {"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80"}) {
            CHECK(is_utf8_without_controls(std::string(at, 'a') + std::string{inner} +
                                           std::string(17, 'z')));
        }
        for (const std::string& inner :
             std::vector<std::string>{"\n", "\x7f", "\x1b[31m", std::string(1, '\0'), "\xc2\x85",
                                      "\xc3", "\x80", "\xff"}) {
            const std::string text = std::string(at, 'a') + inner + std::string(17, 'z');
            CHECK_MESSAGE(!is_utf8_without_controls(text), at);
        }
    }
    CHECK(is_utf8_without_controls(""));
    CHECK(is_utf8_without_controls(" ~!\"#$%&'()*+,-./0123456789:;<=>?@AZ[\\]^_`az{|}"));
}

TEST_CASE("malformed UTF-8 is refused") {
    const std::vector<std::string> malformed{
        "\xc0\xaf",                  // overlong '/', 2 bytes
        "\xc1\xbf",                  // overlong U+007F
        "\xe0\x80\xaf",              // overlong '/', 3 bytes
        "\xe0\x9f\xbf",              // overlong U+07FF
        "\xf0\x80\x80\xaf",          // overlong '/', 4 bytes
        "\xf0\x8f\xbf\xbf",          // overlong U+FFFF
        "\xed\xa0\x80",              // U+D800, a surrogate
        "\xed\xbf\xbf",              // U+DFFF
        "\xed\xa0\xbd\xed\xb8\x80",  // a surrogate pair (CESU-8)
        "\xf4\x90\x80\x80",          // U+110000
        "\xf5\x80\x80\x80",          // lead byte past U+10FFFF
        "\xf8\x88\x80\x80\x80",      // 5-byte form
        "\xfc\x84\x80\x80\x80\x80",
        "\xfe",
        "\xff",
        "\xc3",  // truncated at the end
        "\xe2\x82",
        "\xf0\x9f\x98",
        "\xc3"
        "a",  // truncated, followed by ASCII
        "\xe2\x82"
        "a",
        "\xf0\x9f\x98"
        "a",
        "\xf0\x9f"
        "a\x80",
        "\x80",  // stray continuation bytes
        "a\xbf",
        "\xc3\xa9\xa9",
        "\xc3\xc3\xa9",  // a lead byte where a continuation should be
    };
    for (const std::string& text : malformed) {
        CHECK_MESSAGE(!is_utf8_without_controls(text), text);
        CHECK_FALSE(is_valid_name(text));
        CHECK_FALSE(is_valid_secret(text));
        CHECK_FALSE(is_valid_topic(text));
    }
    // Every two-byte string: valid exactly when it is two printable ASCII characters or one
    // well-formed, non-control two-byte sequence (U+00A0..U+07FF).
    for (unsigned first = 0; first < 256; ++first) {
        for (unsigned second = 0; second < 256; ++second) {
            const std::string text{static_cast<char>(first), static_cast<char>(second)};
            const auto printable = [](unsigned byte) { return byte >= 0x20 && byte < 0x7f; };
            const unsigned code_point = ((first & 0x1f) << 6) | (second & 0x3f);
            const bool expected =
                (printable(first) && printable(second)) ||
                (first >= 0xc0 && first < 0xe0 && (second & 0xc0) == 0x80 && code_point >= 0xa0);
            if (is_utf8_without_controls(text) != expected) {
                FAIL_CHECK(std::hex << first << " " << second);
            }
        }
    }
}

TEST_CASE("control characters are refused: C0, DEL and C1") {
    for (unsigned byte = 0; byte < 0x20; ++byte) {
        CHECK_FALSE(is_utf8_without_controls(std::string{"a", 1} + static_cast<char>(byte)));
    }
    CHECK_FALSE(is_utf8_without_controls("a\x7f"));
    CHECK_FALSE(is_utf8_without_controls("\xc2\x80"));  // U+0080
    CHECK_FALSE(is_utf8_without_controls("\xc2\x9b"));  // U+009B, the C1 CSI
    CHECK_FALSE(is_utf8_without_controls("\xc2\x9f"));  // U+009F
    CHECK(is_utf8_without_controls("\xc2\xa0"));        // U+00A0, the first after C1
}

TEST_CASE("names, secrets and topics share the UTF-8 rule") {
    CHECK(is_valid_name("\xe5\x90\x8d\xe5\x89\x8d"));  // 名前
    CHECK(
        is_valid_name("\xf0\x9f\x98\x80"
                      "x"));
    CHECK_FALSE(is_valid_name("\xc0\xae\xc0\xae"));  // overlong "..": a classic filter bypass
    CHECK_FALSE(
        is_valid_name("a\xc2\x85"
                      "b"));  // NEL
    CHECK_FALSE(is_valid_name("a\x1b[2Jb"));
    CHECK(
        is_valid_secret("s\xc3\xa9"
                        "cret"));
    CHECK_FALSE(is_valid_secret("s\xff"));
    CHECK_FALSE(is_valid_secret("a b"));
    CHECK(is_valid_topic("news/\xc3\xa9t\xc3\xa9/\xf0\x9f\x8c\x8d"));
    CHECK(is_valid_topic(std::string(5000, 't')));  // the length limit is the broker's
    CHECK_FALSE(is_valid_topic(""));
    CHECK_FALSE(is_valid_topic(std::string{"a\0b", 3}));
    CHECK_FALSE(is_valid_topic("a\rb"));
    CHECK_FALSE(is_valid_topic("a\nINFO: forged"));
    CHECK_FALSE(is_valid_topic("\x1b]0;title\x07"));
    CHECK_FALSE(is_valid_topic("\x01"));
    CHECK(kInvalidTopic == "ERROR: Invalid topic (UTF-8 with no control characters)");
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
