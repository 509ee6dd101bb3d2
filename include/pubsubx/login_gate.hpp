// --users: how a connection waits for the slow check of its CONNECT's password (scrypt takes
// a tenth of a second and 32 MiB: never on the event loop). src/security/ implements it; the
// server only asks.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "pubsubx/core/client.hpp"

namespace pubsubx {

class LoginGate {
  public:
    // Called on the event loop, later: with an empty error frame the CONNECT may go on (the
    // connection hands it to the broker again, which then knows the password is right);
    // otherwise it is refused with it.
    using Done = std::function<void(std::string_view error_frame)>;
    virtual void check_password(std::string name, std::string password, const SourceAddress& source,
                                Done done) = 0;

  protected:
    ~LoginGate() = default;
};

}  // namespace pubsubx
