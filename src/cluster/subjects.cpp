#include "subjects.hpp"

#include <cstdio>

#include "pubsubx/protocol.hpp"

namespace pubsubx::cluster {

namespace {

bool kept_as_is(unsigned char byte) {
    return (byte >= 'a' && byte <= 'z') || (byte >= 'A' && byte <= 'Z') ||
           (byte >= '0' && byte <= '9') || byte == '-';
}

// Calls on_level with each `/`-separated level of `topic` (empty levels included).
template <typename OnLevel>
void for_each_level(std::string_view topic, OnLevel&& on_level) {
    for (std::size_t start = 0;;) {
        const std::size_t end = topic.find('/', start);
        on_level(topic.substr(start, end == std::string_view::npos ? end : end - start),
                 end == std::string_view::npos);
        if (end == std::string_view::npos) {
            return;
        }
        start = end + 1;
    }
}

std::string hashed_subject(std::string_view prefix, std::string_view topic) {
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(stable_hash(topic)));
    return std::string{prefix} + "h." + hex;
}

}  // namespace

std::uint64_t stable_hash(std::string_view bytes) {
    std::uint64_t hash = 0xcbf29ce484222325ULL;
    for (const char byte : bytes) {
        hash ^= static_cast<unsigned char>(byte);
        hash *= 0x100000001b3ULL;
    }
    return hash;
}

void append_escaped(std::string& out, std::string_view text) {
    if (text.empty()) {
        out.push_back('_');
        return;
    }
    static constexpr char kHex[] = "0123456789ABCDEF";
    for (const char c : text) {
        const auto byte = static_cast<unsigned char>(c);
        if (kept_as_is(byte)) {
            out.push_back(c);
        } else {
            out.push_back('_');
            out.push_back(kHex[byte >> 4]);
            out.push_back(kHex[byte & 0xf]);
        }
    }
}

std::string escaped(std::string_view text) {
    std::string out;
    append_escaped(out, text);
    return out;
}

std::string cluster_prefix(std::string_view cluster) {
    return "psx." + escaped(cluster) + ".";
}

std::string topic_subject(std::string_view prefix, std::string_view topic) {
    std::string subject{prefix};
    subject += "t";
    for_each_level(topic, [&](std::string_view level, bool) {
        subject.push_back('.');
        append_escaped(subject, level);
    });
    return subject.size() > kMaxSubjectBytes ? hashed_subject(prefix, topic) : subject;
}

std::string hashed_subjects(std::string_view prefix) {
    return std::string{prefix} + "h.*";
}

std::vector<std::string> interest_subjects(std::string_view prefix, std::string_view filter) {
    if (!has_wildcard_level(filter)) {
        return {topic_subject(prefix, filter)};
    }
    std::string subject{prefix};
    subject += "t";
    std::string parent;
    for_each_level(filter, [&](std::string_view level, bool last) {
        if (level == "#" && last) {
            parent = subject;
            subject += ".>";
            return;
        }
        subject.push_back('.');
        if (level == "+") {
            subject.push_back('*');
        } else {
            append_escaped(subject, level);
        }
    });
    std::vector<std::string> subjects{subject};
    // `#` alone has no parent topic: "<prefix>t" is no topic's subject.
    if (!parent.empty() && parent.size() > prefix.size() + 1) {
        subjects.push_back(parent);
    }
    if (subject.size() > kMaxSubjectBytes) {
        // A filter this long matches only topics longer still: all of them are hashed.
        subjects.clear();
    }
    subjects.push_back(hashed_subjects(prefix));
    return subjects;
}

}  // namespace pubsubx::cluster
