// What travels between nodes over NATS, encoded and decoded without I/O:
//  - batches of messages: each message has its origin node (an incarnation id, new at every
//    start), the origin's sequence number, the topic and the data. The sequence numbers every
//    publish of the origin, so a duplicate is recognised and a hand-over knows what the old
//    owner had received. A batch also says how many messages its origin sent to its subject
//    before it, so that a node receiving that subject sees a gap (messages lost on the way).
//  - control records (interest, hand-over): a kind byte, then length-prefixed fields.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pubsubx::cluster {

// One message as it travelled.
struct Envelope {
    std::uint64_t origin = 0;
    std::uint64_t sequence = 0;
    std::string_view topic;
    std::string_view data;
};

// A batch: messages of one origin to one NATS subject, published one after the other, numbered
// from the batch's first sequence on. One NATS message carries a whole batch, so NATS parses,
// routes and delivers once per batch instead of once per message.
void begin_batch(std::string& out, std::uint64_t origin, std::uint64_t first_sequence,
                 std::uint64_t sent_before);
void add_to_batch(std::string& out, std::string_view topic, std::string_view data);
std::size_t batch_size(std::string_view batch);  // messages in it
struct BatchHeader {
    std::uint64_t origin = 0;
    std::uint64_t first_sequence = 0;
    std::uint64_t sent_before = 0;  // what the origin had sent to the batch's subject before it
    std::uint64_t count = 0;
};
// Null if the bytes do not start with a batch header of this version.
std::optional<BatchHeader> batch_header(std::string_view batch);

// Calls on_message(const Envelope&) for each message of a batch, in order. False if the
// bytes are not a whole batch of this version (then some messages may have been seen).
template <typename OnMessage>
bool for_each_message(std::string_view batch, OnMessage&& on_message);

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

namespace detail {
inline constexpr char kBatchVersion = 3;
// version, origin, first sequence, sent before, count
inline constexpr std::size_t kBatchHeader = 1 + 8 + 8 + 8 + 4;
inline constexpr std::size_t kCountAt = 25;
inline constexpr std::size_t kEntryHeader = 4 + 4;
std::uint64_t read_le(std::string_view bytes, int size);
}  // namespace detail

template <typename OnMessage>
bool for_each_message(std::string_view batch, OnMessage&& on_message) {
    using namespace detail;
    if (batch.size() < kBatchHeader || batch[0] != kBatchVersion) {
        return false;
    }
    Envelope envelope;
    envelope.origin = read_le(batch.substr(1), 8);
    envelope.sequence = read_le(batch.substr(9), 8);
    std::uint64_t count = read_le(batch.substr(kCountAt), 4);
    batch.remove_prefix(kBatchHeader);
    for (; count > 0; --count, ++envelope.sequence) {
        if (batch.size() < kEntryHeader) {
            return false;
        }
        const std::uint64_t topic_size = read_le(batch, 4);
        const std::uint64_t data_size = read_le(batch.substr(4), 4);
        batch.remove_prefix(kEntryHeader);
        if (topic_size == 0 || topic_size > batch.size() || data_size > batch.size() - topic_size) {
            return false;
        }
        envelope.topic = batch.substr(0, topic_size);
        envelope.data = batch.substr(topic_size, data_size);
        batch.remove_prefix(topic_size + data_size);
        on_message(envelope);
    }
    return batch.empty();
}

}  // namespace pubsubx::cluster
