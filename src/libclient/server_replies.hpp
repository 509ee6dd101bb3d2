// The client side of the protocol, with no I/O: the CONNECT frame, and what each frame the
// server sends means at the point the conversation has reached. The library's connection and
// pubsubx-bench's links (epoll, no Asio) both read the server through it.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "pubsubx/client.hpp"

namespace pubsubx::client {

// CONNECT <name>, or CONNECT <name> <secret> when there is a secret.
std::string connect_frame(std::string_view name, std::string_view secret);

// The topics of the frame that follows RESTORED <name>: separated by single spaces.
std::vector<std::string> split_topic_list(std::string_view frame);

// Follows one connection's frames from the server, from its CONNECT on.
class ServerReplies {
  public:
    enum class Kind {
        accepted,  // OK: Conn accepted
        restored,  // the topic list after RESTORED <name>: `text` is the list
        refused,   // the answer to CONNECT was an ERROR: frame (`text`), or no answer at all
        message,   // `topic`, `text` the data
        error,     // an ERROR: frame on a live connection (`text`)
        nothing,   // RESTORED <name> (its list follows), or a stray reply to ignore
    };
    struct Reply {
        Kind kind = Kind::nothing;
        std::string_view topic;
        std::string_view text;
    };

    // A CONNECT was sent: the next frame answers it.
    void expect_connect_answer() {
        answered_ = false;
        topic_list_next_ = false;
    }
    Reply read(std::string_view frame);
    bool answered() const { return answered_; }

  private:
    bool answered_ = true;
    bool topic_list_next_ = false;
};

}  // namespace pubsubx::client
