// What travels between nodes over NATS, encoded and decoded without I/O:
//  - a message: its origin node (an incarnation id, new at every start), the origin's sequence
//    number, the topic and the data. The sequence numbers every publish of the origin, so a
//    duplicate is recognised and a hand-over knows what the old owner had received.
//  - control records (interest, hand-over): a kind byte, then length-prefixed fields.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pubsubx::cluster {

struct Envelope {
    std::uint64_t origin = 0;
    std::uint64_t sequence = 0;
    std::string_view topic;
    std::string_view data;
};

void encode_envelope(std::string& out, const Envelope& envelope);
// Null for anything that is not a whole envelope of this version.
std::optional<Envelope> decode_envelope(std::string_view bytes);

// Builds a control record: a kind byte, then fields.
class RecordWriter {
  public:
    explicit RecordWriter(char kind) { bytes_.push_back(kind); }
    RecordWriter& field(std::string_view value);
    RecordWriter& number(std::uint64_t value);
    const std::string& bytes() const { return bytes_; }

  private:
    std::string bytes_;
};

// Reads a control record's fields in order; a missing or truncated field reads as failed().
class RecordReader {
  public:
    explicit RecordReader(std::string_view bytes);
    char kind() const { return kind_; }
    std::string_view field();
    std::uint64_t number();
    bool at_end() const { return rest_.empty(); }
    bool failed() const { return failed_; }

  private:
    std::string_view rest_;
    char kind_ = 0;
    bool failed_ = false;
};

}  // namespace pubsubx::cluster
