#include "openssl_errors.hpp"

#include <openssl/err.h>

namespace pubsubx::tls {

std::string describe_openssl_error(const std::error_code& code) {
    const unsigned long queued = ERR_get_error();
    ERR_clear_error();
    if (code) {
        return code.message();
    }
    if (queued == 0) {
        return "unknown error";
    }
    const char* reason = ERR_reason_error_string(queued);
    return reason != nullptr ? reason : "error " + std::to_string(queued);
}

}  // namespace pubsubx::tls
