#include "pubsubx/protocol.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace pubsubx {

std::size_t find_delimiter(std::string_view bytes, std::size_t from) {
    const char* const begin = bytes.data();
    const char* const end = begin + bytes.size();
    const char* p = begin + from;
    while (p < end) {
        const void* hit = std::memchr(p, kDelimiter[0], static_cast<std::size_t>(end - p));
        if (hit == nullptr) {
            return std::string_view::npos;
        }
        p = static_cast<const char*>(hit);
        if (end - p < static_cast<std::ptrdiff_t>(kDelimiter.size())) {
            return std::string_view::npos;
        }
        if (p[1] == kDelimiter[1] && p[2] == kDelimiter[2]) {
            return static_cast<std::size_t>(p - begin);
        }
        ++p;
    }
    return std::string_view::npos;
}

std::size_t FrameSplitter::bytes_completing_tail(std::string_view bytes) const {
    // A delimiter that starts in the last one or two bytes of the tail.
    const std::size_t tail_size = tail_.size();
    for (std::size_t in_tail = std::min<std::size_t>(kDelimiter.size() - 1, tail_size); in_tail > 0;
         --in_tail) {
        const std::size_t needed = kDelimiter.size() - in_tail;
        if (bytes.size() >= needed &&
            std::string_view{tail_}.substr(tail_size - in_tail) == kDelimiter.substr(0, in_tail) &&
            bytes.substr(0, needed) == kDelimiter.substr(in_tail)) {
            return needed;
        }
    }
    const std::size_t at = find_delimiter(bytes);
    return at == std::string_view::npos ? 0 : at + kDelimiter.size();
}

bool FrameSplitter::unfinished_too_long(std::string_view unfinished) const {
    if (unfinished.size() <= max_frame_) {
        return false;
    }
    std::size_t delimiter_start = 0;
    if (unfinished.ends_with(kDelimiter.substr(0, 2))) {
        delimiter_start = 2;
    } else if (unfinished.ends_with(kDelimiter.substr(0, 1))) {
        delimiter_start = 1;
    }
    return unfinished.size() - delimiter_start > max_frame_;
}

void FrameSplitter::release_memory_if_empty() {
    if (tail_.empty() && tail_.capacity() > 0) {
        std::string{}.swap(tail_);
    }
}

namespace {

CommandKind command_kind(std::string_view word) {
    if (word == "PUBLISH") {
        return CommandKind::publish;
    }
    if (word == "SUBSCRIBE") {
        return CommandKind::subscribe;
    }
    if (word == "UNSUBSCRIBE") {
        return CommandKind::unsubscribe;
    }
    if (word == "CONNECT") {
        return CommandKind::connect;
    }
    if (word == "DISCONNECT") {
        return CommandKind::disconnect;
    }
    return CommandKind::unknown;
}

}  // namespace

Command parse_command(std::string_view frame) {
    Command command;
    const std::size_t first_space = frame.find(' ');
    command.kind = command_kind(frame.substr(0, first_space));
    if (first_space == std::string_view::npos) {
        return command;
    }
    const std::string_view rest = frame.substr(first_space + 1);
    const std::size_t second_space = rest.find(' ');
    command.argument = rest.substr(0, second_space);
    command.has_argument = !command.argument.empty();
    if (second_space != std::string_view::npos) {
        command.data = rest.substr(second_space + 1);
    }
    return command;
}

namespace {

constexpr std::uint64_t kEveryByte(std::uint8_t value) {
    return 0x0101010101010101ULL * value;
}

// Eight bytes that are all printable ASCII (0x20..0x7E). The classic bit tricks: a byte below
// 0x20, or a zero byte in `word ^ 0x7F...`, sets that byte's high bit in the result; they are
// exact once no byte has its own high bit set.
bool all_printable_ascii(std::uint64_t word) {
    const std::uint64_t high_bits = kEveryByte(0x80);
    const std::uint64_t del = word ^ kEveryByte(0x7f);
    const std::uint64_t below_space = (word - kEveryByte(0x20)) & ~word;
    const std::uint64_t is_del = (del - kEveryByte(0x01)) & ~del;
    return ((word | below_space | is_del) & high_bits) == 0;
}

bool is_continuation(unsigned char byte) {
    return (byte & 0xc0) == 0x80;
}

}  // namespace

// The ranges of the second byte are those of RFC 3629's table: they exclude overlong forms,
// surrogates (ED A0..BF) and code points above U+10FFFF (F4 90..).
std::size_t utf8_char_length(std::string_view text) {
    if (text.empty()) {
        return 0;
    }
    const auto* bytes = reinterpret_cast<const unsigned char*>(text.data());
    const unsigned char lead = bytes[0];
    std::size_t length = 0;
    unsigned char second_min = 0x80;
    unsigned char second_max = 0xbf;
    if (lead >= 0x20 && lead < 0x7f) {
        return 1;
    }
    if (lead >= 0xc2 && lead <= 0xdf) {
        length = 2;
        if (lead == 0xc2) {
            second_min = 0xa0;  // C2 80..9F encode the C1 controls U+0080..U+009F
        }
    } else if (lead >= 0xe0 && lead <= 0xef) {
        length = 3;
        if (lead == 0xe0) {
            second_min = 0xa0;
        } else if (lead == 0xed) {
            second_max = 0x9f;
        }
    } else if (lead >= 0xf0 && lead <= 0xf4) {
        length = 4;
        if (lead == 0xf0) {
            second_min = 0x90;
        } else if (lead == 0xf4) {
            second_max = 0x8f;
        }
    } else {
        return 0;  // C0 controls, DEL, a stray continuation byte, C0/C1 overlong leads, F5..FF
    }
    if (text.size() < length || bytes[1] < second_min || bytes[1] > second_max) {
        return 0;
    }
    for (std::size_t i = 2; i < length; ++i) {
        if (!is_continuation(bytes[i])) {
            return 0;
        }
    }
    return length;
}

namespace {

bool is_field_text(std::string_view field, std::size_t max_length) {
    return !field.empty() && field.size() <= max_length &&
           field.find(' ') == std::string_view::npos && is_utf8_without_controls(field);
}

}  // namespace

bool is_utf8_without_controls(std::string_view text) {
    const auto* p = reinterpret_cast<const unsigned char*>(text.data());
    const unsigned char* const end = p + text.size();
    while (p != end) {
        if (end - p >= 8) {
            std::uint64_t word;
            std::memcpy(&word, p, sizeof word);
            if (all_printable_ascii(word)) {
                p += 8;
                continue;
            }
        }
        if (*p >= 0x20 && *p < 0x7f) {
            ++p;  // printable ASCII: most topics' tails
            continue;
        }
        const std::size_t length =
            utf8_char_length({reinterpret_cast<const char*>(p), static_cast<std::size_t>(end - p)});
        if (length == 0) {
            return false;
        }
        p += length;
    }
    return true;
}

bool is_valid_name(std::string_view name) {
    return is_field_text(name, kMaxNameLength);
}

bool is_valid_secret(std::string_view secret) {
    return is_field_text(secret, kMaxSecretLength);
}

bool is_valid_topic(std::string_view topic) {
    return !topic.empty() && is_utf8_without_controls(topic);
}

TopicShape topic_shape(std::string_view topic) {
    TopicShape shape;
    for (std::size_t start = 0;;) {
        const std::size_t end = topic.find('/', start);
        const std::string_view level =
            topic.substr(start, end == std::string_view::npos ? end : end - start);
        if (level == "+" || level == "#") {
            shape.wildcard = true;
            shape.hash_not_last |= level == "#" && end != std::string_view::npos;
        }
        if (end == std::string_view::npos) {
            return shape;
        }
        ++shape.levels;
        start = end + 1;
    }
}

bool has_wildcard_level(std::string_view topic) {
    for (std::size_t at = 0; at < topic.size(); ++at) {
        if ((topic[at] == '+' || topic[at] == '#') && (at == 0 || topic[at - 1] == '/') &&
            (at + 1 == topic.size() || topic[at + 1] == '/')) {
            return true;
        }
    }
    return false;
}

bool reads_as_reply(std::string_view topic) {
    return topic == "ERROR:" || topic == "OK:" || topic == "RESTORED";
}

PublishBan publish_ban(std::string_view topic) {
    if (has_wildcard_level(topic)) {
        return PublishBan::wildcard;
    }
    if (reads_as_reply(topic)) {
        return PublishBan::reply_word;
    }
    return is_system_topic(topic) ? PublishBan::system : PublishBan::none;
}

bool is_system_topic(std::string_view topic) {
    constexpr std::string_view kSystem{"$SYS"};
    return topic.starts_with(kSystem) && (topic.size() == kSystem.size() || topic[4] == '/');
}

void append_frame(std::string& out, std::string_view frame) {
    out.append(frame);
    out.append(kDelimiter);
}

void append_message_frame(std::string& out, std::string_view topic, std::string_view data) {
    const std::size_t at = out.size();
    out.resize(at + topic.size() + 1 + data.size() + kDelimiter.size());
    char* p = out.data() + at;
    std::memcpy(p, topic.data(), topic.size());
    p += topic.size();
    *p++ = ' ';
    if (!data.empty()) {
        std::memcpy(p, data.data(), data.size());
        p += data.size();
    }
    std::memcpy(p, kDelimiter.data(), kDelimiter.size());
}

ServerFrame parse_server_frame(std::string_view frame) {
    ServerFrame parsed;
    if (frame == kConnAccepted) {
        parsed.kind = ServerFrameKind::accepted;
        return parsed;
    }
    if (frame.starts_with(kRestoredPrefix)) {
        parsed.kind = ServerFrameKind::restored;
        parsed.text = frame.substr(kRestoredPrefix.size());
        return parsed;
    }
    if (frame.starts_with("ERROR: ")) {
        parsed.kind = ServerFrameKind::error;
        parsed.text = frame;
        return parsed;
    }
    const std::size_t space = frame.find(' ');
    parsed.topic = frame.substr(0, space);
    if (space != std::string_view::npos) {
        parsed.text = frame.substr(space + 1);
    }
    return parsed;
}

std::size_t count_frames(std::string_view frames) {
    std::size_t count = 0;
    for (std::size_t at = find_delimiter(frames); at != std::string_view::npos;
         at = find_delimiter(frames, at + kDelimiter.size())) {
        ++count;
    }
    return count;
}

bool filter_matches(std::string_view filter, std::string_view topic) {
    if (!topic.empty() && topic.front() == '$' && !filter.empty() &&
        (filter.front() == '+' || filter.front() == '#')) {
        return false;
    }
    std::size_t f = 0;
    std::size_t t = 0;
    for (;;) {
        const std::size_t f_end = std::min(filter.find('/', f), filter.size());
        const std::string_view level = filter.substr(f, f_end - f);
        if (level == "#" && f_end == filter.size()) {
            return true;
        }
        if (t > topic.size()) {
            return false;  // the topic ended a level before: only `#` matches that
        }
        const std::size_t t_end = std::min(topic.find('/', t), topic.size());
        if (level != "+" && level != topic.substr(t, t_end - t)) {
            return false;
        }
        if (f_end == filter.size()) {
            return t_end == topic.size();
        }
        f = f_end + 1;
        t = t_end + 1;
    }
}

namespace {
bool is_wildcard_level(std::string_view level) {
    return level == "+" || level == "#";
}
}  // namespace

// Level by level: `#` covers whatever is left; `+` covers one level but not a `#`; a literal
// covers only itself. A filter that reaches `$` topics is covered by no wildcard first level.
bool filter_covers(std::string_view outer, std::string_view filter) {
    const std::string_view outer_first = outer.substr(0, outer.find('/'));
    const std::string_view first = filter.substr(0, filter.find('/'));
    if (first.starts_with('$') && is_wildcard_level(outer_first)) {
        return false;
    }
    std::size_t o = 0;
    std::size_t f = 0;
    for (;;) {
        const std::size_t o_end = std::min(outer.find('/', o), outer.size());
        const std::string_view outer_level = outer.substr(o, o_end - o);
        if (outer_level == "#") {
            return true;
        }
        const std::size_t f_end = std::min(filter.find('/', f), filter.size());
        const std::string_view level = filter.substr(f, f_end - f);
        if (level == "#") {
            // A topic has a level at least: `+/#` matches whatever a whole-filter `#` does.
            return f == 0 && outer == "+/#";
        }
        if (outer_level != "+" && outer_level != level) {
            return false;
        }
        if (o_end == outer.size() || f_end == filter.size()) {
            if (o_end == outer.size() && f_end == filter.size()) {
                return true;
            }
            if (o_end == outer.size()) {
                return false;  // the filter goes deeper than `outer`
            }
            // The filter ended: `a` is covered by `a/#` alone.
            return outer.substr(o_end + 1) == "#";
        }
        o = o_end + 1;
        f = f_end + 1;
    }
}

}  // namespace pubsubx
