// libFuzzer target over the users file's parser (src/security/users_file.hpp): whatever the
// bytes, it never reads out of bounds, and what it accepts holds only valid names, hashes and
// filters.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "pubsubx/protocol.hpp"
#include "security/password_hash.hpp"
#include "security/users_file.hpp"

namespace {

void require(bool condition) {
    if (!condition) {
        std::abort();
    }
}

// Every filter is valid, covers itself, and a right to subscribe to it allows it.
void check_filters(const pubsubx::Rights* rights) {
    require(rights != nullptr);
    for (const auto* list : {&rights->publish, &rights->subscribe}) {
        for (const std::string& filter : *list) {
            require(pubsubx::is_valid_topic(filter) && !pubsubx::topic_shape(filter).hash_not_last);
            require(pubsubx::filter_covers(filter, filter));
        }
    }
    for (const std::string& filter : rights->subscribe) {
        require(rights->may_subscribe(filter));
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace pubsubx::security;
    const auto parsed = parse_users_file({reinterpret_cast<const char*>(data), size});
    if (const auto* file = std::get_if<UsersFile>(&parsed)) {
        for (const auto& [name, entry] : file->users) {
            require(pubsubx::is_valid_name(name) && !hash_problem(entry.password_hash));
            check_filters(entry.rights.get());
        }
        check_filters(file->anonymous.get());
    } else {
        require(std::get<UsersFileError>(parsed).line >= 1);
    }
    return 0;
}
