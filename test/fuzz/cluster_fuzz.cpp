// libFuzzer target over what a cluster node reads from NATS, which any client of the NATS
// server could have published: batches of messages and control records (src/cluster/
// envelope.hpp), and the subjects made from the topics and filters inside them. Whatever the
// bytes, decoding never reads out of bounds, a decoded batch encodes back to the same bytes,
// and every subject is one NATS can take (no empty token, no byte outside the escape set).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "cluster/envelope.hpp"
#include "cluster/subjects.hpp"
#include "pubsubx/protocol.hpp"

namespace {

using namespace pubsubx::cluster;

void require(bool condition) {
    if (!condition) {
        std::abort();
    }
}

bool valid_subject(std::string_view subject) {
    if (subject.empty() || subject.front() == '.' || subject.back() == '.' ||
        subject.find("..") != std::string_view::npos) {
        return false;
    }
    for (const char c : subject) {
        const auto byte = static_cast<unsigned char>(c);
        if (byte <= ' ' || byte >= 0x7f) {
            return false;
        }
    }
    return true;
}

void check_subjects(std::string_view topic) {
    const std::string prefix = cluster_prefix("fuzz");
    const std::string subject = topic_subject(prefix, topic);
    require(valid_subject(subject) && subject.size() <= kMaxSubjectBytes);
    // A published topic may not name a NATS wildcard of its own.
    require(subject.find('*') == std::string::npos && subject.find('>') == std::string::npos);
    if (pubsubx::topic_shape(topic).hash_not_last) {
        return;  // the broker refuses such a filter before it reaches the cluster
    }
    for (const std::string& interest : interest_subjects(prefix, topic)) {
        require(valid_subject(interest));
    }
}

void check_batch(std::string_view bytes) {
    std::string again;
    bool first = true;
    const bool whole = for_each_message(bytes, [&](const Envelope& message) {
        if (first) {
            begin_batch(again, message.origin, message.sequence, batch_header(bytes)->sent_before);
            first = false;
        }
        add_to_batch(again, message.topic, message.data);
        check_subjects(message.topic);
    });
    if (whole && !first) {
        require(again == bytes);
    }
}

void check_record(std::string_view bytes) {
    RecordReader reader{bytes};
    while (!reader.failed() && !reader.at_end()) {
        if (reader.field().size() > bytes.size()) {
            std::abort();
        }
        reader.number();
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view bytes{reinterpret_cast<const char*>(data), size};
    check_batch(bytes);
    check_record(bytes);
    check_subjects(bytes.substr(0, 2048));
    return 0;
}
