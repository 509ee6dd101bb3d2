#include "pubsubx/core/accounts.hpp"

#include <algorithm>

#include "pubsubx/protocol.hpp"

namespace pubsubx {

bool Rights::may_publish(std::string_view topic) const {
    return std::any_of(publish.begin(), publish.end(),
                       [&](const std::string& filter) { return filter_matches(filter, topic); });
}

bool Rights::may_subscribe(std::string_view filter) const {
    return std::any_of(subscribe.begin(), subscribe.end(),
                       [&](const std::string& allowed) { return filter_covers(allowed, filter); });
}

Accounts::Accounts(AccountTable table, bool allow_anonymous)
    : table_(std::move(table)), allow_anonymous_(allow_anonymous) {}

void Accounts::replace(AccountTable table) {
    table_ = std::move(table);
    std::erase_if(checked_, [&](const auto& entry) {
        const UserAccount* const account = user(entry.first);
        return account == nullptr || account->password_hash != entry.second.password_hash;
    });
}

const UserAccount* Accounts::user(std::string_view name) const {
    const auto found = table_.users.find(name);
    return found == table_.users.end() ? nullptr : &found->second;
}

const Rights* Accounts::rights_for_name(std::string_view name) const {
    if (const UserAccount* account = user(name)) {
        return account->rights.get();
    }
    return allow_anonymous_ ? table_.anonymous.get() : nullptr;
}

Accounts::Known Accounts::known_password(std::string_view name, std::string_view password) const {
    const auto found = checked_.find(name);
    const UserAccount* const account = user(name);
    if (found == checked_.end() || account == nullptr ||
        account->password_hash != found->second.password_hash) {
        return Known::unknown;
    }
    return found->second.password.matches(password) ? Known::right : Known::wrong;
}

void Accounts::remember_right_password(std::string_view name, std::string_view password_hash,
                                       std::string_view password) {
    const UserAccount* const account = user(name);
    if (account == nullptr || account->password_hash != password_hash) {
        return;  // the file changed while the password was checked
    }
    checked_.insert_or_assign(std::string{name},
                              Checked{std::string{password_hash}, SecretDigest::of(password)});
}

}  // namespace pubsubx
