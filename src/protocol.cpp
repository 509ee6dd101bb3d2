#include "pubsubx/protocol.hpp"

#include <algorithm>
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
// One protocol field that prints safely in a log: no space, no control byte.
bool is_printable_field(std::string_view field, std::size_t max_length) {
    if (field.empty() || field.size() > max_length) {
        return false;
    }
    return std::none_of(field.begin(), field.end(), [](char c) {
        const auto byte = static_cast<unsigned char>(c);
        return byte <= 0x20 || byte == 0x7f;
    });
}
}  // namespace

bool is_valid_name(std::string_view name) {
    return is_printable_field(name, kMaxNameLength);
}

bool is_valid_secret(std::string_view secret) {
    return is_printable_field(secret, kMaxSecretLength);
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

}  // namespace pubsubx
