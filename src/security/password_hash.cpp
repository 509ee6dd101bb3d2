#include "password_hash.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <charconv>
#include <cstdint>
#include <variant>
#include <vector>

namespace pubsubx::security {

namespace {

constexpr std::size_t kSaltBytes = 16;
constexpr std::size_t kHashBytes = 32;
// Bounds on what a users file may ask for: one check takes about 128 * r * 2^ln bytes, at most
// 128 MiB with these.
constexpr int kMaxLog2N = 17;
constexpr int kMaxR = 8;
constexpr int kMaxP = 16;

struct Parsed {
    ScryptCost cost;
    std::vector<unsigned char> salt;
    std::vector<unsigned char> hash;
};

std::string base64(const unsigned char* bytes, std::size_t size) {
    std::string out(4 * ((size + 2) / 3), '\0');
    const int written = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), bytes,
                                        static_cast<int>(size));
    out.resize(static_cast<std::size_t>(written));
    while (!out.empty() && out.back() == '=') {
        out.pop_back();
    }
    return out;
}

// Without padding (the PHC format), or with it, as some tools write it.
std::optional<std::vector<unsigned char>> unbase64(std::string_view text) {
    while (!text.empty() && text.back() == '=') {
        text.remove_suffix(1);
    }
    if (text.empty() || text.size() % 4 == 1) {
        return std::nullopt;
    }
    std::string padded{text};
    const std::size_t padding = (4 - padded.size() % 4) % 4;
    padded.append(padding, '=');
    std::vector<unsigned char> out(padded.size() / 4 * 3);
    const int written =
        EVP_DecodeBlock(out.data(), reinterpret_cast<const unsigned char*>(padded.data()),
                        static_cast<int>(padded.size()));
    if (written < 0 || static_cast<std::size_t>(written) < padding) {
        return std::nullopt;
    }
    out.resize(static_cast<std::size_t>(written) - padding);
    return out;
}

std::vector<unsigned char> scrypt(std::string_view password, const std::vector<unsigned char>& salt,
                                  const ScryptCost& cost) {
    std::vector<unsigned char> out(kHashBytes);
    const std::uint64_t n = std::uint64_t{1} << cost.log2_n;
    const std::uint64_t memory =
        128 * static_cast<std::uint64_t>(cost.r) * (n + 2) * static_cast<std::uint64_t>(cost.p) +
        (1u << 20);
    if (EVP_PBE_scrypt(password.data(), password.size(), salt.data(), salt.size(), n,
                       static_cast<std::uint64_t>(cost.r), static_cast<std::uint64_t>(cost.p),
                       memory, out.data(), out.size()) != 1) {
        throw PasswordHashError("scrypt failed (OpenSSL)");
    }
    return out;
}

bool read_int(std::string_view text, std::string_view key, int& value) {
    if (!text.starts_with(key) || text.size() == key.size()) {
        return false;
    }
    const char* const end = text.data() + text.size();
    const auto [at, error] = std::from_chars(text.data() + key.size(), end, value);
    return error == std::errc{} && at == end;
}

// "$scrypt$ln=15,r=8,p=1$salt$hash", or why not.
std::variant<Parsed, std::string> parse(std::string_view encoded) {
    constexpr std::string_view kPrefix{"$scrypt$"};
    if (!encoded.starts_with(kPrefix)) {
        return std::string{"not a scrypt hash (it must start with $scrypt$)"};
    }
    encoded.remove_prefix(kPrefix.size());
    const std::size_t params_end = encoded.find('$');
    const std::size_t salt_end =
        params_end == std::string_view::npos ? params_end : encoded.find('$', params_end + 1);
    if (salt_end == std::string_view::npos) {
        return std::string{"expected $scrypt$ln=N,r=R,p=P$<salt>$<hash>"};
    }
    const std::string_view params = encoded.substr(0, params_end);
    Parsed parsed;
    const std::size_t first = params.find(',');
    const std::size_t second =
        first == std::string_view::npos ? first : params.find(',', first + 1);
    if (second == std::string_view::npos ||
        !read_int(params.substr(0, first), "ln=", parsed.cost.log2_n) ||
        !read_int(params.substr(first + 1, second - first - 1), "r=", parsed.cost.r) ||
        !read_int(params.substr(second + 1), "p=", parsed.cost.p)) {
        return std::string{"its parameters must read ln=N,r=R,p=P"};
    }
    if (parsed.cost.log2_n < 1 || parsed.cost.log2_n > kMaxLog2N || parsed.cost.r < 1 ||
        parsed.cost.r > kMaxR || parsed.cost.p < 1 || parsed.cost.p > kMaxP) {
        return "its cost is out of bounds (ln 1 to " + std::to_string(kMaxLog2N) + ", r 1 to " +
               std::to_string(kMaxR) + ", p 1 to " + std::to_string(kMaxP) + ")";
    }
    auto salt = unbase64(encoded.substr(params_end + 1, salt_end - params_end - 1));
    auto hash = unbase64(encoded.substr(salt_end + 1));
    if (!salt || salt->empty() || !hash || hash->size() != kHashBytes) {
        return std::string{"its salt or hash is not base64 (the hash must be 32 bytes)"};
    }
    parsed.salt = std::move(*salt);
    parsed.hash = std::move(*hash);
    return parsed;
}

}  // namespace

std::string hash_password(std::string_view password, ScryptCost cost) {
    std::vector<unsigned char> salt(kSaltBytes);
    if (RAND_bytes(salt.data(), static_cast<int>(salt.size())) != 1) {
        throw PasswordHashError("no random salt available (OpenSSL)");
    }
    const std::vector<unsigned char> hash = scrypt(password, salt, cost);
    return "$scrypt$ln=" + std::to_string(cost.log2_n) + ",r=" + std::to_string(cost.r) +
           ",p=" + std::to_string(cost.p) + "$" + base64(salt.data(), salt.size()) + "$" +
           base64(hash.data(), hash.size());
}

bool verify_password(std::string_view password, std::string_view encoded) {
    auto parsed = parse(encoded);
    if (auto* problem = std::get_if<std::string>(&parsed)) {
        throw PasswordHashError(*problem);
    }
    const Parsed& stored = std::get<Parsed>(parsed);
    const std::vector<unsigned char> offered = scrypt(password, stored.salt, stored.cost);
    return CRYPTO_memcmp(offered.data(), stored.hash.data(), kHashBytes) == 0;
}

std::optional<std::string> hash_problem(std::string_view encoded) {
    auto parsed = parse(encoded);
    if (auto* problem = std::get_if<std::string>(&parsed)) {
        return *problem;
    }
    return std::nullopt;
}

}  // namespace pubsubx::security
