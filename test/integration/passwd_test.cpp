// pubsubx-passwd (issue 13): adds or changes a user in a users file, keeping the
// rest, and refuses what it cannot do without touching the file.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <string>
#include <variant>

#include "security/password_hash.hpp"
#include "security/users_file.hpp"
#include "support.hpp"

using namespace pubsubx::testing;
using namespace pubsubx::security;

namespace {

// Runs pubsubx-passwd FILE NAME with `input` on its stdin (a pipe: one line is the password).
int passwd(const std::string& file, const std::string& name, const std::string& input) {
    ChildProcess child{binary_path("PUBSUBX_PASSWD"), {file, name}, true};
    child.write_stdin(input);
    child.close_stdin();
    return child.wait_exit(10000ms).value_or(-1);
}

std::string contents(const std::string& path) {
    std::ifstream in{path};
    return {std::istreambuf_iterator<char>{in}, std::istreambuf_iterator<char>{}};
}

UsersFile parsed(const std::string& path) {
    auto result = parse_users_file(contents(path));
    REQUIRE(std::holds_alternative<UsersFile>(result));
    return std::get<UsersFile>(std::move(result));
}

}  // namespace

TEST_CASE("pubsubx-passwd adds users, changes a password, and keeps the other lines") {
    TemporaryDirectory directory{"passwd"};
    const std::string file = directory.path() + "/users";
    REQUIRE(passwd(file, "alice", "s3cret\n") == 0);
    struct stat status {};
    REQUIRE(stat(file.c_str(), &status) == 0);
    CHECK((status.st_mode & 0777) == 0600);
    {
        std::ofstream more{file, std::ios::app};
        more << "publish alice sensors/#\n";
    }
    REQUIRE(passwd(file, "bob", "other\n") == 0);
    REQUIRE(passwd(file, "alice", "changed\n") == 0);
    const UsersFile users = parsed(file);
    REQUIRE(users.users.size() == 2);
    CHECK(verify_password("changed", users.users.at("alice").password_hash));
    CHECK_FALSE(verify_password("s3cret", users.users.at("alice").password_hash));
    CHECK(verify_password("other", users.users.at("bob").password_hash));
    CHECK(users.users.at("alice").rights->publish == std::vector<std::string>{"sensors/#"});
    CHECK(contents(file).find("s3cret") == std::string::npos);
}

TEST_CASE("pubsubx-passwd refuses a bad name, an empty password and a broken file untouched") {
    TemporaryDirectory directory{"passwd"};
    const std::string file = directory.path() + "/users";
    CHECK(passwd(file, "bad name", "x\n") == 2);
    CHECK(passwd(file, "alice", "\n") == 1);
    {
        std::ofstream broken{file};
        broken << "user alice plain\n";
    }
    CHECK(passwd(file, "bob", "x\n") == 1);
    CHECK(contents(file) == "user alice plain\n");
}

TEST_CASE("a file root edits keeps its owner, group and mode") {
    // Review: root's pubsubx-passwd gave the file to root, and the server's user could no
    // longer read it.
    if (geteuid() != 0) {
        MESSAGE("not root: an owner cannot be given away here");
        return;
    }
    TemporaryDirectory directory{"passwd-owner"};
    const std::string path = directory.path() + "/users";
    REQUIRE(passwd(path, "alice", "first\n") == 0);
    REQUIRE(::chown(path.c_str(), 65534, 65534) == 0);
    REQUIRE(::chmod(path.c_str(), 0640) == 0);
    REQUIRE(passwd(path, "bob", "second\n") == 0);
    struct stat status {};
    REQUIRE(::stat(path.c_str(), &status) == 0);
    CHECK(status.st_uid == 65534);
    CHECK(status.st_gid == 65534);
    CHECK((status.st_mode & 07777) == 0640);
    CHECK(parsed(path).users.size() == 2);
}
