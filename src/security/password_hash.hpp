// A password as a users file keeps it (--users, issue 13): scrypt (RFC 7914) from OpenSSL's
// libcrypto, with a random salt, in the PHC string format that other tools read too:
//   $scrypt$ln=15,r=8,p=1$<salt>$<hash>      (salt and hash in base64 without padding)
// Never the password itself.
#pragma once

#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace pubsubx::security {

// N = 2^log2_n; memory per hash is 128 * r * N bytes (32 MiB with the defaults).
struct ScryptCost {
    int log2_n = 15;
    int r = 8;
    int p = 1;
};

class PasswordHashError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

std::string hash_password(std::string_view password, ScryptCost cost = {});
// Whether `password` is the one `encoded` was made from (compared in constant time). Throws
// PasswordHashError when `encoded` is not a well-formed scrypt hash within the cost bounds.
bool verify_password(std::string_view password, std::string_view encoded);
// Why `encoded` is not a well-formed scrypt hash within the cost bounds, or nothing.
std::optional<std::string> hash_problem(std::string_view encoded);

}  // namespace pubsubx::security
