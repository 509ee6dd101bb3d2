#include <doctest/doctest.h>

#include "command.hpp"

using namespace pubsubx::client;

TEST_CASE("interactive commands parse in any case") {
    const UserCommand connect = parse_user_command("connect 12000 alice");
    CHECK(connect.kind == CommandKind::connect);
    CHECK(connect.port == 12000);
    CHECK(connect.name == "alice");
    CHECK(connect.host.empty());
    CHECK(parse_user_command("Subscribe news").kind == CommandKind::subscribe);
    CHECK(parse_user_command("UNSUBSCRIBE news").topic == "news");
    CHECK(parse_user_command("disconnect").kind == CommandKind::disconnect);
    CHECK(parse_user_command("-h").kind == CommandKind::help);
    CHECK(parse_user_command("   ").kind == CommandKind::empty);
}

TEST_CASE("CONNECT takes host:port too") {
    const UserCommand remote = parse_user_command("CONNECT example.org:4000 bob");
    CHECK(remote.host == "example.org");
    CHECK(remote.port == 4000);
    const UserCommand v6 = parse_user_command("CONNECT [::1]:4000 bob");
    CHECK(v6.host == "::1");
    CHECK(v6.port == 4000);
}

TEST_CASE("CONNECT takes an optional secret") {
    const UserCommand with = parse_user_command("CONNECT 4000 bob s3cret");
    CHECK(with.kind == CommandKind::connect);
    CHECK(with.name == "bob");
    CHECK(with.secret == "s3cret");
    CHECK(parse_user_command("CONNECT 4000 bob").secret.empty());
}

TEST_CASE("PUBLISH keeps the data as typed") {
    const UserCommand publish = parse_user_command("PUBLISH news hello  big world ");
    CHECK(publish.kind == CommandKind::publish);
    CHECK(publish.topic == "news");
    CHECK(publish.data == "hello  big world ");
    CHECK(parse_user_command("PUBLISH news").data.empty());
    CHECK(parse_user_command("publish news x\r").data == "x");
}

TEST_CASE("bad commands are explained") {
    struct Row {
        std::string line;
        std::string_view error_start;
    };
    const Row rows[] = {
        {"CONNECT", "ERROR: Usage: CONNECT <port> <name>"},
        {"CONNECT abc alice", "ERROR: Wrong port 'abc'"},
        {"CONNECT 0 alice", "ERROR: Wrong port '0'"},
        {"CONNECT 65536 alice", "ERROR: Wrong port '65536'"},
        {"CONNECT 12000", "ERROR: Name is empty"},
        {"CONNECT 12000 a b c", "ERROR: Usage: CONNECT <port> <name> [<secret>]"},
        {"CONNECT 12000 a " + std::string(129, 's'), "ERROR: A secret is 1 to 128 bytes"},
        {"PUBLISH", "ERROR: Topic is empty"},
        {"SUBSCRIBE", "ERROR: Topic is empty"},
        {"SUBSCRIBE a b", "ERROR: A topic has no spaces"},
        {"jump", "ERROR: Unknown command 'jump', to see help enter -h"},
    };
    CHECK(parse_user_command("CONNECT 12000 " + std::string(65, 'n'))
              .error.starts_with("ERROR: Name must be 1 to 64 bytes"));
    for (const Row& row : rows) {
        CAPTURE(row.line);
        const UserCommand command = parse_user_command(row.line);
        CHECK(command.kind == CommandKind::invalid);
        CHECK(command.error.starts_with(row.error_start));
    }
}
