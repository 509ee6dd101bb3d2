#include "server_replies.hpp"

#include "pubsubx/protocol.hpp"

namespace pubsubx::client {

std::string connect_frame(std::string_view name, std::string_view secret) {
    std::string frame{"CONNECT "};
    frame.append(name);
    if (!secret.empty()) {
        frame.append(" ").append(secret);
    }
    return frame;
}

std::vector<std::string> split_topic_list(std::string_view frame) {
    std::vector<std::string> topics;
    std::size_t start = 0;
    while (start < frame.size()) {
        std::size_t end = frame.find(' ', start);
        end = end == std::string_view::npos ? frame.size() : end;
        if (end > start) {
            topics.emplace_back(frame.substr(start, end - start));
        }
        start = end + 1;
    }
    return topics;
}

ServerReplies::Reply ServerReplies::read(std::string_view frame) {
    if (topic_list_next_) {
        topic_list_next_ = false;
        return {Kind::restored, {}, frame};
    }
    if (frame.empty()) {
        return {};
    }
    const ServerFrame parsed = parse_server_frame(frame);
    if (!answered_) {
        answered_ = true;
        switch (parsed.kind) {
            case ServerFrameKind::accepted:
                return {Kind::accepted, {}, frame};
            case ServerFrameKind::restored:
                topic_list_next_ = true;
                return {};
            case ServerFrameKind::error:
            case ServerFrameKind::message:
                return {Kind::refused, {}, frame};
        }
    }
    switch (parsed.kind) {
        case ServerFrameKind::message:
            return {Kind::message, parsed.topic, parsed.text};
        case ServerFrameKind::error:
            return {Kind::error, {}, frame};
        case ServerFrameKind::accepted:
        case ServerFrameKind::restored:
            break;  // not an answer to anything sent now
    }
    return {};
}

}  // namespace pubsubx::client
