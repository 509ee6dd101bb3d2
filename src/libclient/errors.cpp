// client_category(): the broker's refusals and the client's own errors as std::error_code.
#include <array>

#include "pubsubx/client.hpp"

namespace pubsubx {

namespace {

class ClientCategory final : public std::error_category {
  public:
    const char* name() const noexcept override { return "pubsubx"; }
    std::string message(int value) const override {
        switch (static_cast<client_errc>(value)) {
            case client_errc::name_taken:
                return "name already taken";
            case client_errc::not_authorized:
                return "not authorized";
            case client_errc::invalid_name:
                return "invalid name (1 to 64 bytes, no spaces or control characters)";
            case client_errc::invalid_secret:
                return "invalid secret (1 to 128 bytes, no spaces or control characters)";
            case client_errc::server_full:
                return "server is full";
            case client_errc::name_moving:
                return "name is moving to another node of the cluster";
            case client_errc::not_allowed:
                return "not allowed";
            case client_errc::invalid_topic:
                return "invalid topic";
            case client_errc::topic_too_long:
                return "topic too long";
            case client_errc::too_many_subscriptions:
                return "too many subscriptions";
            case client_errc::frame_too_long:
                return "frame too long";
            case client_errc::broker_error:
                return "refused by the broker";
            case client_errc::not_connected:
                return "not connected";
            case client_errc::already_connected:
                return "already connected";
            case client_errc::connection_lost:
                return "connection lost";
            case client_errc::connect_timeout:
                return "no answer to CONNECT in time";
            case client_errc::closed:
                return "client closed";
            case client_errc::buffer_full:
                return "too much waits to be sent";
            case client_errc::unexpected_reply:
                return "the server's answer to CONNECT is not a PubSubX answer";
            case client_errc::invalid_message:
                return "the data holds the frame delimiter (\\n\\nx)";
        }
        return "unknown pubsubx error";
    }
};

struct FramePrefix {
    std::string_view prefix;
    client_errc code;
};

// The broker's ERROR: frames by their first words (docs/protocol.md); longer prefixes of the
// same words come first.
constexpr std::array kFramePrefixes{
    FramePrefix{"ERROR: Name already taken", client_errc::name_taken},
    FramePrefix{"ERROR: Not authorized", client_errc::not_authorized},
    FramePrefix{"ERROR: Invalid name", client_errc::invalid_name},
    FramePrefix{"ERROR: Invalid secret", client_errc::invalid_secret},
    FramePrefix{"ERROR: Server is full", client_errc::server_full},
    FramePrefix{"ERROR: Name is moving", client_errc::name_moving},
    FramePrefix{"ERROR: Not allowed to", client_errc::not_allowed},
    FramePrefix{"ERROR: Invalid topic", client_errc::invalid_topic},
    FramePrefix{"ERROR: Wildcard", client_errc::invalid_topic},
    FramePrefix{"ERROR: Topics ", client_errc::invalid_topic},
    FramePrefix{"ERROR: Topic too long", client_errc::topic_too_long},
    FramePrefix{"ERROR: Too many levels", client_errc::invalid_topic},
    FramePrefix{"ERROR: Too many subscriptions", client_errc::too_many_subscriptions},
    FramePrefix{"ERROR: Frame too long", client_errc::frame_too_long},
};

}  // namespace

const std::error_category& client_category() {
    static const ClientCategory category;
    return category;
}

std::error_code make_error_code(client_errc error) {
    return {static_cast<int>(error), client_category()};
}

client_errc classify_error_frame(std::string_view frame) {
    for (const FramePrefix& known : kFramePrefixes) {
        if (frame.starts_with(known.prefix)) {
            return known.code;
        }
    }
    return client_errc::broker_error;
}

}  // namespace pubsubx
