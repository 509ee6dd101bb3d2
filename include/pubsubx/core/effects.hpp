// What the core asks of the I/O layer. The core never touches a socket or a timer: its calls
// record effects here and the server carries them out in one place after every call, so no
// decision of the core (close that connection, arm expiry for T) can be forgotten.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "pubsubx/core/client.hpp"

namespace pubsubx {

struct CloseRequest {
    Connection* connection;
    std::string reason;  // for the log
    // Written before the close (without delimiter), or empty: the connection closes at once.
    std::string error_frame = {};
};

struct Effects {
    // Connections whose client's queue went from empty to non-empty: start a write.
    std::vector<Connection*> flush;
    // Connections the core detached from their client (a takeover, a slow consumer): close
    // them now, without telling the core; what was queued stays with the client.
    std::vector<CloseRequest> close;
    // Connections of restored clients whose queue came from a durable store: hold their
    // writes until the store has committed the hand-over (the server asks the store).
    std::vector<Connection*> hold_until_durable;
    // Arm the expiry timer for this time (or earlier), then call expire_lost_clients then.
    std::optional<TimePoint> arm_expiry;

    bool empty() const {
        return flush.empty() && close.empty() && hold_until_durable.empty() && !arm_expiry;
    }
    void clear() {
        hold_until_durable.clear();
        flush.clear();
        close.clear();
        arm_expiry.reset();
    }
};

}  // namespace pubsubx
