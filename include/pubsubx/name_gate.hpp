// Cluster mode: how a connection waits for the cluster to settle the name of its CONNECT
// (src/cluster/ implements it; the server only asks).
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "pubsubx/core/client.hpp"

namespace pubsubx {

class NameGate {
  public:
    // Called on the event loop, later: with an empty error frame the CONNECT may go on (the
    // connection hands it to the broker again, at once); otherwise it is refused with it.
    using Done = std::function<void(std::string_view error_frame)>;
    virtual void settle_name(const Connection& connection, std::string name, std::string secret,
                             const SourceAddress& source, Done done) = 0;

  protected:
    ~NameGate() = default;
};

}  // namespace pubsubx
