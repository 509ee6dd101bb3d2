// The cluster's pure parts (src/cluster/: subjects, envelopes, remote interest) and the
// broker core's side of cluster mode (core/cluster_link.hpp), without NATS.
#include <doctest/doctest.h>

#include <set>
#include <string>
#include <vector>

#include "broker_fixture.hpp"
#include "cluster/envelope.hpp"
#include "cluster/remote_interest.hpp"
#include "cluster/subjects.hpp"
#include "pubsubx/protocol.hpp"

using namespace pubsubx;
using namespace pubsubx::cluster;
using namespace pubsubx::test_support;
using namespace std::chrono_literals;

namespace {

const std::string kPrefix = cluster_prefix("test");

// NATS's own matching of a subject against a subscription subject (`*` one token, `>` one
// or more at the end), to check that our subjects route as the broker's filters do.
bool nats_matches(std::string_view subscription, std::string_view subject) {
    std::vector<std::string_view> want;
    std::vector<std::string_view> have;
    const auto split = [](std::string_view text, std::vector<std::string_view>& out) {
        for (std::size_t start = 0;;) {
            const std::size_t dot = text.find('.', start);
            out.push_back(text.substr(start, dot == std::string_view::npos ? dot : dot - start));
            if (dot == std::string_view::npos) {
                return;
            }
            start = dot + 1;
        }
    };
    split(subscription, want);
    split(subject, have);
    for (std::size_t i = 0; i < want.size(); ++i) {
        if (want[i] == ">") {
            return have.size() > i;
        }
        if (i >= have.size() || (want[i] != "*" && want[i] != have[i])) {
            return false;
        }
    }
    return want.size() == have.size();
}

bool routed(std::string_view filter, std::string_view topic) {
    const std::string subject = topic_subject(kPrefix, topic);
    for (const std::string& subscription : interest_subjects(kPrefix, filter)) {
        if (nats_matches(subscription, subject)) {
            return true;
        }
    }
    return false;
}

// Records what the core tells the cluster.
class RecordingLink final : public ClusterLink {
  public:
    void interest_added(std::string_view topic) override {
        events.push_back("+" + std::string{topic});
    }
    void interest_removed(std::string_view topic) override {
        events.push_back("-" + std::string{topic});
    }
    void published(std::string_view topic, std::string_view data) override {
        events.push_back("pub " + std::string{topic} + " " + std::string{data});
    }
    void client_removed(const Client& client) override {
        events.push_back("gone " + client.name());
    }
    NameAdmission admit_name(const Connection&, std::string_view, bool held_here) override {
        return held_here ? NameAdmission::local : answer;
    }
    std::vector<std::string> events;
    NameAdmission answer = NameAdmission::local;
};

}  // namespace

TEST_CASE("a topic's subject escapes every byte that NATS would read specially") {
    CHECK(topic_subject(kPrefix, "a/b") == "psx.test.t.a.b");
    CHECK(topic_subject(kPrefix, "a.b") == "psx.test.t.a_2Eb");
    CHECK(topic_subject(kPrefix, "*/>") == "psx.test.t._2A._3E");
    CHECK(topic_subject(kPrefix, "a_2Eb") == "psx.test.t.a_5F2Eb");
    CHECK(topic_subject(kPrefix, "/a//") == "psx.test.t._.a._._");
    CHECK(topic_subject(kPrefix, "\xc3\xa9") == "psx.test.t._C3_A9");
    CHECK(cluster_prefix("my cluster") == "psx.my_20cluster.");
}

TEST_CASE("a topic too long for a subject goes to a hashed subject") {
    const std::string topic(2000, 'x');
    const std::string subject = topic_subject(kPrefix, topic);
    CHECK(subject.starts_with("psx.test.h."));
    CHECK(subject.size() == std::string{"psx.test.h."}.size() + 16);
    CHECK(subject == topic_subject(kPrefix, topic));  // stable
    CHECK(subject != topic_subject(kPrefix, topic + "y"));
    CHECK(routed(topic, topic));
    CHECK(routed("#", topic));
    CHECK(routed("+", topic));  // wildcard holders take hashed subjects and filter locally
}

TEST_CASE("filters become subscriptions that NATS routes as the broker's filter tree does") {
    const std::vector<std::string> filters{"a",   "a/b", "a/+",   "a/#", "#",     "+/b",
                                           "+/+", "+",   "a/+/c", "a.b", "a_2Eb", "/#"};
    const std::vector<std::string> topics{"a",     "a/b",   "a/c", "a/b/c", "b",  "x/b",  "a.b",
                                          "a_2Eb", "a/x/c", "/",   "//",    "/a", "$x/b", "a/"};
    for (const std::string& filter : filters) {
        for (const std::string& topic : topics) {
            CAPTURE(filter);
            CAPTURE(topic);
            // NATS may bring a `$` topic to a first-level wildcard; the core does not deliver it.
            if (topic.starts_with('$')) {
                CHECK((!filter_matches(filter, topic) || routed(filter, topic)));
            } else {
                CHECK(filter_matches(filter, topic) == routed(filter, topic));
            }
        }
    }
    CHECK(interest_subjects(kPrefix, "a/#") ==
          std::vector<std::string>{"psx.test.t.a.>", "psx.test.t.a", "psx.test.h.*"});
    CHECK(interest_subjects(kPrefix, "a/b") == std::vector<std::string>{"psx.test.t.a.b"});
}

TEST_CASE("filter_matches agrees with the broker's routing") {
    CHECK(filter_matches("a/#", "a"));
    CHECK(filter_matches("a/#", "a/b/c"));
    CHECK_FALSE(filter_matches("a/+", "a"));
    CHECK(filter_matches("a/+", "a/"));
    CHECK_FALSE(filter_matches("#", "$SYS/x"));
    CHECK_FALSE(filter_matches("+/x", "$a/x"));
    CHECK(filter_matches("$a/x", "$a/x"));
    CHECK_FALSE(filter_matches("a", "a/b"));
    CHECK_FALSE(filter_matches("a/b", "a"));
}

TEST_CASE("a batch carries its origin, numbered messages, topics and data, and rejects damage") {
    std::string batch;
    begin_batch(batch, 0x1122334455667788ULL, 42, 1000);
    REQUIRE(batch_header(batch));
    CHECK(batch_header(batch)->sent_before == 1000u);
    add_to_batch(batch, "t/x", std::string_view{"d\0ta", 4});
    add_to_batch(batch, "t/y", "");
    CHECK(batch_size(batch) == 2);
    std::vector<Envelope> seen;
    CHECK(for_each_message(batch, [&](const Envelope& envelope) { seen.push_back(envelope); }));
    REQUIRE(seen.size() == 2);
    CHECK(seen[0].origin == 0x1122334455667788ULL);
    CHECK(seen[0].sequence == 42);
    CHECK(seen[0].topic == "t/x");
    CHECK(seen[0].data == std::string_view{"d\0ta", 4});
    CHECK(seen[1].sequence == 43);
    CHECK(seen[1].topic == "t/y");
    CHECK(seen[1].data.empty());
    const auto whole = [](std::string_view bytes) {
        return for_each_message(bytes, [](const Envelope&) {});
    };
    CHECK_FALSE(whole(std::string_view{batch}.substr(0, batch.size() - 1)));
    CHECK_FALSE(whole(batch + "x"));
    CHECK_FALSE(whole(""));
    std::string wrong_version = batch;
    wrong_version[0] = 9;
    CHECK_FALSE(whole(wrong_version));
    std::string long_topic = batch;
    long_topic[detail::kBatchHeader] = 100;  // the first topic would run past the end
    CHECK_FALSE(whole(long_topic));
}

TEST_CASE("a control record reads back its fields, and a truncated one fails") {
    const std::string bytes = RecordWriter{'S'}.number(7).field("name").field("").bytes();
    RecordReader reader{bytes};
    CHECK(reader.kind() == 'S');
    CHECK(reader.number() == 7);
    CHECK(reader.field() == "name");
    CHECK(reader.field().empty());
    CHECK(reader.at_end());
    CHECK_FALSE(reader.failed());
    RecordReader truncated{std::string_view{bytes}.substr(0, bytes.size() - 3)};
    truncated.number();
    truncated.field();
    truncated.field();
    CHECK(truncated.failed());
}

TEST_CASE("remote interest counts nodes per topic and filter") {
    RemoteInterest remote{kPrefix};
    CHECK_FALSE(remote.wanted("a"));
    remote.add(1, "a");
    remote.add(2, "a");
    remote.add(2, "s/+/t");
    REQUIRE(remote.wanted("a"));
    CHECK(*remote.wanted("a") == "psx.test.t.a");
    REQUIRE(remote.wanted("s/x/t"));
    CHECK(remote.wanted("s/x/t")->empty());
    CHECK_FALSE(remote.wanted("s/x"));
    remote.remove(1, "a");
    CHECK(remote.wanted("a"));  // node 2 still wants it
    remote.add(2, "a");         // announced twice: counted once
    remote.forget(2);
    CHECK_FALSE(remote.wanted("a"));
    CHECK_FALSE(remote.wanted("s/x/t"));
    CHECK(remote.entry_count() == 0);
    remote.remove(3, "never");  // unknown node: nothing happens
}

TEST_CASE("a splitter stopped at a frame keeps the rest for resume") {
    FrameSplitter splitter{1024};
    std::vector<std::string> frames;
    std::string bytes;
    append_frame(bytes, "CONNECT a");
    append_frame(bytes, "SUBSCRIBE t");
    bytes += "PUBLISH t par";
    splitter.feed(bytes, [&](std::string_view frame) {
        frames.emplace_back(frame);
        return false;  // the first frame waits for the cluster
    });
    CHECK(frames == std::vector<std::string>{"CONNECT a"});
    splitter.resume([&](std::string_view frame) {
        frames.emplace_back(frame);
        return true;
    });
    std::string rest{"tial"};
    rest += kDelimiter;
    splitter.feed(rest, [&](std::string_view frame) {
        frames.emplace_back(frame);
        return true;
    });
    CHECK(frames == std::vector<std::string>{"CONNECT a", "SUBSCRIBE t", "PUBLISH t partial"});
}

TEST_CASE_FIXTURE(Fixture,
                  "the core tells the cluster of first and last interest, publishes and "
                  "freed names") {
    RecordingLink link;
    broker.attach_cluster(&link);
    FakeConnection a{broker}, b{broker};
    a.send("CONNECT a");
    b.send("CONNECT b");
    a.send("SUBSCRIBE t");
    b.send("SUBSCRIBE t");  // not the first: no event
    b.send("SUBSCRIBE f/+");
    b.send("PUBLISH t hi");
    b.send("PUBLISH $SYS/x no");  // refused: not published, not forwarded
    a.send("UNSUBSCRIBE t");
    b.send("DISCONNECT");
    // b still held t when a left it: t goes with b's last subscriptions.
    CHECK(link.events ==
          std::vector<std::string>{"+t", "+f/+", "pub t hi", "-f/+", "-t", "gone b"});
    link.events.clear();
    broker.publish_from_cluster("t", "remote", t0);  // not sent back to the cluster
    broker.publish_system("$SYS/broker/x", "1", t0);
    CHECK(link.events.empty());
}

TEST_CASE_FIXTURE(Fixture,
                  "a CONNECT the registry must settle waits, and goes on when handed "
                  "again") {
    RecordingLink link;
    link.answer = NameAdmission::ask_registry;
    broker.attach_cluster(&link);
    FakeConnection a{broker};
    CHECK(a.send("CONNECT a").next == FrameResult::Next::await_name);
    CHECK(broker.client_count() == 0);
    link.answer = NameAdmission::moving;
    const FrameResult moving = a.send("CONNECT a");
    CHECK(moving.next == FrameResult::Next::close);
    CHECK(moving.error_frame.starts_with("ERROR: Name is moving"));
    link.answer = NameAdmission::local;
    CHECK(a.send("CONNECT a").next == FrameResult::Next::read_more);
    CHECK(a.received() == Frames{"OK: Conn accepted"});
    // An invalid name is refused here, never sent to the registry.
    link.answer = NameAdmission::ask_registry;
    FakeConnection bad{broker};
    CHECK(bad.send("CONNECT " + std::string(100, 'x')).next == FrameResult::Next::close);
}

TEST_CASE_FIXTURE(Fixture, "a client handed over leaves with its state and arrives lost with it") {
    Logger other_logger{LogLevel::quiet, std::tmpfile()};
    Broker other{config, other_logger};
    FakeConnection x{broker}, publisher{broker};
    x.send("CONNECT x s3cret");
    x.send("SUBSCRIBE t");
    x.send("SUBSCRIBE u/+");
    publisher.send("CONNECT p");
    x.received();
    x.lose(t0);
    publisher.send("PUBLISH t one");
    publisher.send("PUBLISH u/v two");
    std::string error;
    CHECK_FALSE(broker.may_hand_over("x", "wrong", address(9), t0, error));
    CHECK(error.starts_with("ERROR: Not authorized"));
    error.clear();
    CHECK(broker.may_hand_over("x", "s3cret", address(9), t0 + 1s, error));
    CHECK_FALSE(broker.may_hand_over("nobody", "", address(9), t0, error));
    auto state = broker.hand_over("x", t0 + 1s);
    REQUIRE(state);
    CHECK(broker.find_client("x") == nullptr);
    CHECK(broker.topic_count() == 0);
    CHECK(state->subscriptions == std::vector<std::string>{"t", "u/+"});
    CHECK(count_frames(state->frames) == 2);
    REQUIRE(other.adopt(*state, t0 + 1s));
    FakeConnection back{other};
    CHECK(back.send("CONNECT x wrong").error_frame.starts_with("ERROR: Not authorized"));
    FakeConnection right{other, address(1)};
    right.send("CONNECT x s3cret", t0 + 10s);
    CHECK(right.received() == Frames{"RESTORED x", "t u/+", "t one", "u/v two"});
    CHECK(other.check_consistency().empty());
    CHECK(broker.check_consistency().empty());
}

TEST_CASE_FIXTURE(Fixture, "a connected client taken over from another node loses its connection") {
    FakeConnection x{broker};
    x.send("CONNECT x s3cret");
    x.send("SUBSCRIBE t");
    std::string error;
    CHECK_FALSE(broker.may_hand_over("x", "", address(2), t0, error));
    CHECK(error == "ERROR: Name already taken");
    CHECK(broker.may_hand_over("x", "s3cret", address(2), t0, error));
    const auto state = broker.hand_over("x", t0);
    FakeConnection::apply_effects(broker);
    REQUIRE(state);
    CHECK(x.close_reason == "taken over on another node");
    CHECK(broker.client_count() == 0);
}
