#include "appending_bio.hpp"

#include <openssl/bio.h>

#include <new>

namespace pubsubx::tls {

namespace {

int write_ex(BIO* bio, const char* data, std::size_t size, std::size_t* written) {
    BIO_clear_retry_flags(bio);
    static_cast<std::string*>(BIO_get_data(bio))->append(data, size);
    *written = size;
    return 1;
}

long control(BIO*, int command, long, void*) {
    return command == BIO_CTRL_FLUSH ? 1 : 0;
}

int create(BIO* bio) {
    BIO_set_init(bio, 1);
    return 1;
}

const BIO_METHOD* appending_method() {
    static BIO_METHOD* const made = [] {
        BIO_METHOD* method =
            BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "pubsubx TLS records");
        if (method == nullptr) {
            throw std::bad_alloc{};
        }
        BIO_meth_set_write_ex(method, write_ex);
        BIO_meth_set_ctrl(method, control);
        BIO_meth_set_create(method, create);
        return method;
    }();
    return made;
}

}  // namespace

bio_st* new_appending_bio(std::string& out) {
    BIO* bio = BIO_new(appending_method());
    if (bio == nullptr) {
        throw std::bad_alloc{};
    }
    BIO_set_data(bio, &out);
    return bio;
}

}  // namespace pubsubx::tls
