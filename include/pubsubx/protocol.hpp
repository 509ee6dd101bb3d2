// The PubSubX wire protocol (docs/protocol.md): frame splitting, command parsing and frame
// encoding. Pure functions and plain data: no sockets, no clock, no logging.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>

namespace pubsubx {

// Every frame, in both directions, ends with these three bytes.
inline constexpr std::string_view kDelimiter{"\n\nx"};

// The original client refuses longer names; the server enforces the same bound.
inline constexpr std::size_t kMaxNameLength = 64;

// A session-resume secret (the extension `CONNECT <name> <secret>`, docs/protocol.md).
inline constexpr std::size_t kMaxSecretLength = 128;

// The longest frame a connection may send before its CONNECT is accepted: the longest valid
// CONNECT is "CONNECT " + name + " " + secret (201 bytes); a little room is left for
// extensions. Beyond it a pending connection is closed, so it cannot hold more memory.
inline constexpr std::size_t kMaxFrameBeforeConnect = 256;

// Server -> client control frames, exactly as the original server sends them.
inline constexpr std::string_view kConnAccepted{"OK: Conn accepted"};
inline constexpr std::string_view kNameTaken{"ERROR: Name already taken"};
inline constexpr std::string_view kRestoredPrefix{"RESTORED "};
// Extension: the answer to a CONNECT whose secret does not match the client's.
inline constexpr std::string_view kNotAuthorized{"ERROR: Not authorized"};
// Extension: the answer to a SUBSCRIBE, UNSUBSCRIBE or PUBLISH whose topic fails
// is_valid_topic; the connection stays open.
inline constexpr std::string_view kInvalidTopic{
    "ERROR: Invalid topic (UTF-8 with no control characters)"};

// Position of the first delimiter in `bytes`, or npos. memchr finds candidate '\n' bytes at
// memory speed; a frame rarely contains one.
std::size_t find_delimiter(std::string_view bytes, std::size_t from = 0);
// The encoded frames (delimiters included) in `frames`.
std::size_t count_frames(std::string_view frames);

// Cuts a TCP byte stream into frames. Frames complete within one read are handed out as views
// into that read (no copy); only an incomplete tail is kept between reads.
class FrameSplitter {
  public:
    enum class Status { ok, frame_too_long };

    explicit FrameSplitter(std::size_t max_frame) : max_frame_(max_frame) {}

    // Calls on_frame(std::string_view) for every frame completed by `bytes`, in order. The
    // views are valid only during the call, and the frame's delimiter follows each in memory
    // (FrameEnd::delimiter_follows: a PUBLISH's delivery frame is then already encoded). Stops and
    // returns frame_too_long when a frame (complete or not) exceeds max_frame bytes; the splitter
    // is then unusable. on_frame may return false to stop early: the rest of `bytes` is kept, and
    // only resume() may follow (a connection waiting for the cluster to settle its CONNECT).
    template <typename OnFrame>
    Status feed(std::string_view bytes, OnFrame&& on_frame);
    // Goes on with the bytes kept when on_frame stopped a feed.
    template <typename OnFrame>
    Status resume(OnFrame&& on_frame) {
        const std::string kept = std::move(tail_);
        tail_.clear();
        return feed(kept, std::forward<OnFrame>(on_frame));
    }

    // The limit for the frames still to come (a connection may send more once it is known).
    void set_max_frame(std::size_t max_frame) { max_frame_ = max_frame; }
    // Bytes of an incomplete frame held back for the next read.
    std::size_t buffered() const { return tail_.size(); }
    // Gives back the tail's memory; an idle connection then holds no buffer.
    void release_memory_if_empty();

  private:
    // When a tail is held, the delimiter that completes it may start inside the tail.
    // Returns how many bytes of `bytes` complete the frame including the delimiter, or 0.
    std::size_t bytes_completing_tail(std::string_view bytes) const;
    // An unfinished frame is too long once it cannot end within max_frame bytes, allowing
    // for the first bytes of a delimiter at its end.
    bool unfinished_too_long(std::string_view unfinished) const;

    std::string tail_;
    std::size_t max_frame_;
};

enum class CommandKind { connect, subscribe, unsubscribe, publish, disconnect, unknown };

// One client -> server frame, parsed by the original server's rule: split on single spaces,
// the first field is the command, the second the argument, the rest (bytes after the second
// space) the data. `has_argument` is false when the second field is missing or empty, and such
// a frame is not acted on. For CONNECT, `data` holds any extra fields (an old server ignores
// them).
struct Command {
    CommandKind kind = CommandKind::unknown;
    std::string_view argument;
    std::string_view data;
    bool has_argument = false;
};

Command parse_command(std::string_view frame);

// True when `text` is well-formed UTF-8 (no overlong form, no surrogate, nothing above
// U+10FFFF, no truncated sequence) with no control character: C0 (U+0000..U+001F), DEL and C1
// (U+0080..U+009F). This is what MQTT requires of client identifiers and topic names, and
// what makes peer text print safely in a log. Printable ASCII is checked 8 bytes at a time,
// since every PUBLISH checks its topic. The empty string is valid.
bool is_utf8_without_controls(std::string_view text);

// Bytes of the character `text` starts with when it passes is_utf8_without_controls (1 to 4),
// else 0 (also for empty text). For code that walks text character by character.
std::size_t utf8_char_length(std::string_view text);

// A name the server accepts: 1..64 bytes, no space (a space would end the field anyway), and
// is_utf8_without_controls, so that it prints safely in logs and in `RESTORED <name>`.
bool is_valid_name(std::string_view name);

// A secret the server accepts: 1..128 bytes, same characters as a name (it is one field).
bool is_valid_secret(std::string_view secret);

// A topic's characters: not empty and is_utf8_without_controls. It contains no space by
// construction (it is one field). Its length limit is the broker's (--max-topic-length).
bool is_valid_topic(std::string_view topic);

// A topic split into levels at '/' (MQTT's syntax, docs/protocol.md#wildcards). In a SUBSCRIBE
// topic a level that is exactly `+` matches one level and a last level that is exactly `#`
// matches its parent and everything below; inside a longer level they are literal characters.
struct TopicShape {
    std::size_t levels = 1;
    bool wildcard = false;       // a level is exactly `+` or `#`
    bool hash_not_last = false;  // a `#` level before the last one: not a valid filter
};
TopicShape topic_shape(std::string_view topic);
// topic_shape(topic).wildcard, in one pass without splitting (for every new PUBLISH topic).
bool has_wildcard_level(std::string_view topic);
// Whether a subscription to `filter` (an exact topic, or `+` and a trailing `#`) receives a
// PUBLISH to `topic`, as the filter tree decides it: `a/#` matches `a`, and a wildcard in the
// first level does not match a topic starting with `$`. One pair at a time, for the few places
// that have no tree.
bool filter_matches(std::string_view filter, std::string_view topic);
// Whether every topic that `filter` matches is matched by `outer` too (both valid filters):
// a permission to subscribe to `outer` allows a subscription to `filter`.
bool filter_covers(std::string_view outer, std::string_view filter);

// The first level is `$SYS`: the broker's own statistics, which clients may not publish to.
bool is_system_topic(std::string_view topic);

// `ERROR:`, `OK:` or `RESTORED`: a message on such a topic reads as one of the broker's
// replies (`<topic> <data>` is `ERROR: ...`), so a publisher could end others' clients.
// Clients may not publish to them.
bool reads_as_reply(std::string_view topic);

// Why a client may not PUBLISH to a topic that is otherwise valid: the one rule that both the
// check of a PUBLISH and the record of a subscribed topic (Topic::open_to_publish) follow.
enum class PublishBan { none, wildcard, reply_word, system };
PublishBan publish_ban(std::string_view topic);

// Appends `frame` and the delimiter to `out`.
void append_frame(std::string& out, std::string_view frame);
// Appends the delivery frame `<topic> <data>` to `out` without building it separately first.
void append_message_frame(std::string& out, std::string_view topic, std::string_view data);

// Server -> client frames, as a client sees them.
enum class ServerFrameKind { accepted, restored, error, message };

struct ServerFrame {
    ServerFrameKind kind = ServerFrameKind::message;
    std::string_view topic;  // message: the topic
    std::string_view text;   // message: the data; restored: the name; error: the whole frame
};

// Note: the frame after `RESTORED` is the topic list, not a message; only the caller knows
// that, so it must not pass that frame here.
ServerFrame parse_server_frame(std::string_view frame);

// Calls on_frame with each encoded frame of `frames` (frames with their delimiters, as queued
// for a client), in order, each with its delimiter. An unfinished tail is not a frame.
template <typename OnFrame>
void for_each_encoded_frame(std::string_view frames, OnFrame&& on_frame) {
    std::size_t start = 0;
    for (std::size_t end = frames.find(kDelimiter); end != std::string_view::npos;
         end = frames.find(kDelimiter, start)) {
        on_frame(frames.substr(start, end + kDelimiter.size() - start));
        start = end + kDelimiter.size();
    }
}

// ---------------------------------------------------------------------------------------------

template <typename OnFrame>
FrameSplitter::Status FrameSplitter::feed(std::string_view bytes, OnFrame&& on_frame) {
    if (!tail_.empty()) {
        const std::size_t used = bytes_completing_tail(bytes);
        if (used == 0) {
            tail_.append(bytes);
            return unfinished_too_long(tail_) ? Status::frame_too_long : Status::ok;
        }
        // The delimiter may have started inside the tail; the frame ends where it starts, and
        // the delimiter stays after it.
        tail_.append(bytes.substr(0, used));
        const std::string_view frame{tail_.data(), tail_.size() - kDelimiter.size()};
        if (frame.size() > max_frame_) {
            return Status::frame_too_long;
        }
        const bool go_on = on_frame(frame);
        tail_.clear();
        bytes.remove_prefix(used);
        if (!go_on) {
            tail_.assign(bytes);  // kept for resume()
            return Status::ok;
        }
    }
    std::size_t start = 0;
    for (;;) {
        const std::size_t end = find_delimiter(bytes, start);
        if (end == std::string_view::npos) {
            break;
        }
        if (end - start > max_frame_) {
            return Status::frame_too_long;
        }
        if (!on_frame(bytes.substr(start, end - start))) {
            tail_.assign(bytes.substr(end + kDelimiter.size()));  // kept for resume()
            return Status::ok;
        }
        start = end + kDelimiter.size();
    }
    if (unfinished_too_long(bytes.substr(start))) {
        return Status::frame_too_long;
    }
    tail_.assign(bytes.substr(start));
    return Status::ok;
}

}  // namespace pubsubx
