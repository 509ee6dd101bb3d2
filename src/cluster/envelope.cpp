#include "envelope.hpp"

#include <cstring>

namespace pubsubx::cluster {

namespace {

constexpr char kEnvelopeVersion = 1;
constexpr std::size_t kEnvelopeHeader = 1 + 8 + 8 + 4;

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

std::uint64_t read_le(std::string_view bytes, int size) {
    std::uint64_t value = 0;
    for (int i = size - 1; i >= 0; --i) {
        value = value << 8 | static_cast<unsigned char>(bytes[static_cast<std::size_t>(i)]);
    }
    return value;
}

}  // namespace

void encode_envelope(std::string& out, const Envelope& envelope) {
    out.reserve(out.size() + kEnvelopeHeader + envelope.topic.size() + envelope.data.size());
    out.push_back(kEnvelopeVersion);
    append_u64(out, envelope.origin);
    append_u64(out, envelope.sequence);
    append_u32(out, static_cast<std::uint32_t>(envelope.topic.size()));
    out.append(envelope.topic);
    out.append(envelope.data);
}

std::optional<Envelope> decode_envelope(std::string_view bytes) {
    if (bytes.size() < kEnvelopeHeader || bytes[0] != kEnvelopeVersion) {
        return std::nullopt;
    }
    Envelope envelope;
    envelope.origin = read_le(bytes.substr(1), 8);
    envelope.sequence = read_le(bytes.substr(9), 8);
    const std::uint64_t topic_size = read_le(bytes.substr(17), 4);
    bytes.remove_prefix(kEnvelopeHeader);
    if (topic_size == 0 || topic_size > bytes.size()) {
        return std::nullopt;
    }
    envelope.topic = bytes.substr(0, topic_size);
    envelope.data = bytes.substr(topic_size);
    return envelope;
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
