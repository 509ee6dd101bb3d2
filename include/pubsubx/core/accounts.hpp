// Accounts (--users): who may log in, and the topic filters each user may publish to and
// subscribe to. Part of admission: the core keeps the table the users file gave, and which
// passwords it has already checked against which hash. The slow check of a password (scrypt)
// is not done here: the event loop must never wait for it (login_gate.hpp).
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "pubsubx/core/client.hpp"
#include "pubsubx/core/secret_digest.hpp"

namespace pubsubx {

// MQTT-style filters: `+` for one level, a trailing `#` for any levels below (and the level
// itself); a wildcard first level does not reach topics starting with `$`.
struct Rights {
    std::vector<std::string> publish;
    std::vector<std::string> subscribe;

    bool may_publish(std::string_view topic) const;
    // Every topic the subscription would receive is one the user may read.
    bool may_subscribe(std::string_view filter) const;
};

struct UserAccount {
    std::string password_hash;  // security/password_hash.hpp's format; never a password
    std::shared_ptr<const Rights> rights = std::make_shared<Rights>();
};

// What a users file says. Clients whose name is not listed are anonymous.
struct AccountTable {
    std::map<std::string, UserAccount, std::less<>> users;
    std::shared_ptr<const Rights> anonymous = std::make_shared<Rights>();
};

class Accounts {
  public:
    Accounts(AccountTable table, bool allow_anonymous);

    // A reload. Passwords checked against a hash that did not change stay checked.
    void replace(AccountTable table);

    const UserAccount* user(std::string_view name) const;
    bool allow_anonymous() const { return allow_anonymous_; }
    const std::shared_ptr<const Rights>& anonymous_rights() const { return table_.anonymous; }
    std::size_t user_count() const { return table_.users.size(); }

    // What the rights of a client of this name are: its user's if the name is listed, the
    // anonymous ones if they are allowed, else none (the client may not exist).
    const Rights* rights_for_name(std::string_view name) const;

    // A password compared with the one last found right for this user's current hash.
    // `unknown`: no password was found right yet (or the hash changed): only the slow check
    // can tell. A password that differs from a known right one is wrong without it.
    enum class Known { right, wrong, unknown };
    Known known_password(std::string_view name, std::string_view password) const;
    // The slow check found `password` right for `password_hash` (the user's hash then).
    void remember_right_password(std::string_view name, std::string_view password_hash,
                                 std::string_view password);

  private:
    struct Checked {
        std::string password_hash;  // the hash the password was checked against
        SecretDigest password;      // salted SHA-256: the password itself is not kept
    };
    AccountTable table_;
    bool allow_anonymous_;
    std::unordered_map<std::string, Checked, StringHash, std::equal_to<>> checked_;
};

}  // namespace pubsubx
