// An OpenSSL write BIO that appends every record OpenSSL makes to a string: records gather
// there and go out many per system call (the server's TLS connections, pubsubx-bench's links).
// It never blocks and never fails short.
#pragma once

#include <string>

struct bio_st;

namespace pubsubx::tls {

// A new BIO appending to `out`, which must outlive it; throws std::bad_alloc.
bio_st* new_appending_bio(std::string& out);

}  // namespace pubsubx::tls
