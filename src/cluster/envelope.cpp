#include "envelope.hpp"

#include <cstring>

namespace pubsubx::cluster {

namespace {

void append_u64(std::string& out, std::uint64_t value) {
    for (int i = 0; i < 8; ++i) {
        out.push_back(static_cast<char>(value >> (8 * i)));
    }
}

void append_u32(std::string& out, std::uint32_t value) {
    for (int i = 0; i < 4; ++i) {
        out.push_back(static_cast<char>(value >> (8 * i)));
    }
}

void store_le(char* out, std::uint64_t value, int size) {
    for (int i = 0; i < size; ++i) {
        out[i] = static_cast<char>(value >> (8 * i));
    }
}

}  // namespace

namespace detail {
std::uint64_t read_le(std::string_view bytes, int size) {
    std::uint64_t value = 0;
    for (int i = size - 1; i >= 0; --i) {
        value = value << 8 | static_cast<unsigned char>(bytes[static_cast<std::size_t>(i)]);
    }
    return value;
}
}  // namespace detail

using detail::read_le;

void begin_batch(std::string& out, std::uint64_t origin, std::uint64_t first_sequence,
                 std::uint64_t sent_before) {
    out.push_back(detail::kBatchVersion);
    append_u64(out, origin);
    append_u64(out, first_sequence);
    append_u64(out, sent_before);
    append_u32(out, 0);
}

std::optional<BatchHeader> batch_header(std::string_view batch) {
    if (batch.size() < detail::kBatchHeader || batch[0] != detail::kBatchVersion) {
        return std::nullopt;
    }
    return BatchHeader{read_le(batch.substr(1), 8), read_le(batch.substr(9), 8),
                       read_le(batch.substr(17), 8), read_le(batch.substr(detail::kCountAt), 4)};
}

// One resize and two copies: this runs for every message another node wants.
void add_to_batch(std::string& out, std::string_view topic, std::string_view data) {
    const std::size_t at = out.size();
    out.resize(at + detail::kEntryHeader + topic.size() + data.size());
    char* const entry = out.data() + at;
    store_le(entry, topic.size(), 4);
    store_le(entry + 4, data.size(), 4);
    std::memcpy(entry + detail::kEntryHeader, topic.data(), topic.size());
    std::memcpy(entry + detail::kEntryHeader + topic.size(), data.data(), data.size());
    store_le(out.data() + detail::kCountAt, batch_size(out) + 1, 4);
}

std::size_t batch_size(std::string_view batch) {
    return batch.size() < detail::kBatchHeader ? 0 : read_le(batch.substr(detail::kCountAt), 4);
}

RecordWriter& RecordWriter::field(std::string_view value) {
    append_u32(bytes_, static_cast<std::uint32_t>(value.size()));
    bytes_.append(value);
    return *this;
}

RecordWriter& RecordWriter::number(std::uint64_t value) {
    append_u64(bytes_, value);
    return *this;
}

RecordReader::RecordReader(std::string_view bytes) : rest_(bytes) {
    if (rest_.empty()) {
        failed_ = true;
        return;
    }
    kind_ = rest_.front();
    rest_.remove_prefix(1);
}

std::string_view RecordReader::field() {
    if (failed_ || rest_.size() < 4) {
        failed_ = true;
        return {};
    }
    const std::uint64_t size = read_le(rest_, 4);
    if (size > rest_.size() - 4) {
        failed_ = true;
        return {};
    }
    const std::string_view value = rest_.substr(4, size);
    rest_.remove_prefix(4 + size);
    return value;
}

std::uint64_t RecordReader::number() {
    if (failed_ || rest_.size() < 8) {
        failed_ = true;
        return 0;
    }
    const std::uint64_t value = read_le(rest_, 8);
    rest_.remove_prefix(8);
    return value;
}

}  // namespace pubsubx::cluster
