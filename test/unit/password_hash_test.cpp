// Password hashes for a users file (src/security/password_hash.hpp): scrypt in the PHC string
// format, checked against RFC 7914's own test vector.
#include "security/password_hash.hpp"

#include <doctest/doctest.h>

#include <string>

using namespace pubsubx::security;

namespace {
// RFC 7914, section 12: scrypt("password", "NaCl", N=1024, r=8, p=16), the first 32 of its 64
// bytes (PBKDF2's blocks are independent), in base64 without padding.
constexpr const char* kRfcVector =
    "$scrypt$ln=10,r=8,p=16$TmFDbA$/bq+HJ00cgB4VucZDQHp/nxq18vII3gw53N2Y0s3MWI";
constexpr ScryptCost kFast{10, 8, 1};  // tests need not pay the default cost
}  // namespace

TEST_CASE("scrypt hashes match RFC 7914's test vector") {
    CHECK(verify_password("password", kRfcVector));
    CHECK_FALSE(verify_password("Password", kRfcVector));
    CHECK_FALSE(hash_problem(kRfcVector));
}

TEST_CASE("a hashed password verifies, another does not, and every hash has its own salt") {
    const std::string first = hash_password("s3cret", kFast);
    const std::string second = hash_password("s3cret", kFast);
    CHECK(first.starts_with("$scrypt$ln=10,r=8,p=1$"));
    CHECK(first != second);
    CHECK(verify_password("s3cret", first));
    CHECK(verify_password("s3cret", second));
    CHECK_FALSE(verify_password("s3cret ", first));
    CHECK_FALSE(verify_password("", first));
    CHECK(first.find("s3cret") == std::string::npos);
}

TEST_CASE("a malformed or too costly hash is refused with the reason") {
    const std::string good = hash_password("x", kFast);
    for (const std::string& bad :
         {std::string{"plain"}, std::string{"$pbkdf2$..."}, std::string{"$scrypt$"},
          std::string{"$scrypt$ln=10,r=8$c2FsdA$aGFzaA"},
          std::string{"$scrypt$ln=10,r=8,p=1$c2FsdA$short"},
          std::string{"$scrypt$ln=30,r=8,p=1$c2FsdA$/bq+HJ00cgB4VucZDQHp/nxq18vII3gw53N2Y0s3MWI"},
          std::string{"$scrypt$ln=10,r=99,p=1$c2FsdA$/bq+HJ00cgB4VucZDQHp/nxq18vII3gw53N2Y0s3MWI"},
          std::string{"$scrypt$ln=x,r=8,p=1$c2FsdA$/bq+HJ00cgB4VucZDQHp/nxq18vII3gw53N2Y0s3MWI"},
          std::string{"$scrypt$ln=10,r=8,p=1$!!$/bq+HJ00cgB4VucZDQHp/nxq18vII3gw53N2Y0s3MWI"},
          good.substr(0, good.size() - 2)}) {
        CAPTURE(bad);
        CHECK(hash_problem(bad).has_value());
        CHECK_THROWS_AS(verify_password("x", bad), PasswordHashError);
    }
}

TEST_CASE("a hash written with base64 padding, as some tools write it, verifies the same") {
    CHECK(verify_password(
        "password",
        "$scrypt$ln=10,r=8,p=16$TmFDbA==$/bq+HJ00cgB4VucZDQHp/nxq18vII3gw53N2Y0s3MWI="));
}
