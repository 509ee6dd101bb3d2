// The users file's parser (src/security/users_file.hpp): what it takes, and a clear error
// naming the line for anything else.
#include "security/users_file.hpp"

#include <doctest/doctest.h>

#include <string>

#include "security/password_hash.hpp"

using namespace pubsubx::security;

namespace {
const std::string kHash =
    "$scrypt$ln=10,r=8,p=16$TmFDbA$/bq+HJ00cgB4VucZDQHp/nxq18vII3gw53N2Y0s3MWI";

UsersFileError error_of(const std::string& text) {
    const auto parsed = parse_users_file(text);
    REQUIRE(std::holds_alternative<UsersFileError>(parsed));
    return std::get<UsersFileError>(parsed);
}
}  // namespace

TEST_CASE("a users file gives each user a hash and permissions, and anonymous ones") {
    const std::string text = "# users\n\nuser alice " + kHash +
                             "\r\npublish alice sensors/#\n  subscribe\talice chat/+ \n"
                             "user bob " +
                             kHash + "\npublish * public/#\nsubscribe * public/+";
    const auto parsed = parse_users_file(text);
    REQUIRE(std::holds_alternative<UsersFile>(parsed));
    const UsersFile& file = std::get<UsersFile>(parsed);
    REQUIRE(file.users.size() == 2);
    const pubsubx::UserAccount& alice = file.users.at("alice");
    CHECK(alice.password_hash == kHash);
    CHECK(alice.rights->publish == std::vector<std::string>{"sensors/#"});
    CHECK(alice.rights->subscribe == std::vector<std::string>{"chat/+"});
    CHECK(file.users.at("bob").rights->publish.empty());
    CHECK(file.anonymous->publish == std::vector<std::string>{"public/#"});
    CHECK(file.anonymous->subscribe == std::vector<std::string>{"public/+"});
    CHECK(verify_password("password", alice.password_hash));
}

TEST_CASE("a broken line is an error naming the line and the reason") {
    CHECK(error_of("user alice plain").line == 1);
    CHECK(error_of("user alice plain").message.find("not a scrypt hash") != std::string::npos);
    CHECK(error_of("\n\npublish ghost a/b").line == 3);
    CHECK(error_of("publish ghost a/b").message.find("no 'user' line") != std::string::npos);
    CHECK(error_of("user a " + kHash + "\nuser a " + kHash).line == 2);
    CHECK(error_of("user a " + kHash + "\nsubscribe a a/#/b").message.find("'#'") !=
          std::string::npos);
    CHECK(error_of("grant a b").message.find("unknown word") != std::string::npos);
    CHECK(error_of("user a").message.find("expected") != std::string::npos);
    CHECK(error_of("user * " + kHash).message.find("valid client name") != std::string::npos);
    CHECK(error_of("user " + std::string(100, 'x') + " " + kHash).line == 1);
    CHECK(error_of("user a " + kHash + "\npublish a bad\x01topic").line == 2);
}

TEST_CASE("an empty file lists nobody") {
    const auto parsed = parse_users_file("");
    REQUIRE(std::holds_alternative<UsersFile>(parsed));
    CHECK(std::get<UsersFile>(parsed).users.empty());
}
