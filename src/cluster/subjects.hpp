// How PubSubX topics, filters and names become NATS subjects and key-value keys. Pure: no
// NATS here. Every byte outside A-Za-z0-9- is written as `_` and two hex digits, level by level,
// so no topic can act as a NATS wildcard (`*`, `>`) or separator (`.`); an empty level is a lone
// `_`, which no escape produces. A topic whose subject would be too long goes to a hashed
// subject instead (the topic travels in the message anyway, see envelope.hpp).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace pubsubx::cluster {

// Longer subjects fall back to the hashed form (NATS's control line is 4 KiB by default).
inline constexpr std::size_t kMaxSubjectBytes = 1024;

// "psx.<cluster>." with the cluster name escaped; every subject of the cluster starts so.
std::string cluster_prefix(std::string_view cluster);

// Appends `text` escaped as one subject token (or key) to `out`.
void append_escaped(std::string& out, std::string_view text);
std::string escaped(std::string_view text);

// The subject a message on `topic` is published to: "<prefix>t.<levels>", or
// "<prefix>h.<hash>" when that would exceed kMaxSubjectBytes.
std::string topic_subject(std::string_view prefix, std::string_view topic);

// The subjects a node subscribes to for a topic or filter: `+` becomes `*`, a trailing `#`
// becomes `>` plus its parent (`a/#` matches `a`). A filter with a wildcard also needs the
// hashed subjects ("<prefix>h.*"), since a long topic under it is published there.
std::vector<std::string> interest_subjects(std::string_view prefix, std::string_view filter);
std::string hashed_subjects(std::string_view prefix);

// A stable 64-bit hash (FNV-1a): every node must compute the same one.
std::uint64_t stable_hash(std::string_view bytes);

}  // namespace pubsubx::cluster
