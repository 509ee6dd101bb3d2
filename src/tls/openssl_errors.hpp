// OpenSSL's reasons as text, for log lines and error messages.
#pragma once

#include <string>
#include <system_error>

namespace pubsubx::tls {

// The reason of `code` (an asio::ssl error) or, without one, of the oldest error on this
// thread's OpenSSL error queue, e.g. "wrong version number"; the queue is cleared.
std::string describe_openssl_error(const std::error_code& code);

}  // namespace pubsubx::tls
