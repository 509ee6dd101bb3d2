#include "pubsubx/core/secret_digest.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <stdexcept>

namespace pubsubx {

namespace {
std::array<std::uint8_t, SecretDigest::kHashBytes> hash_with(
    const std::array<std::uint8_t, SecretDigest::kSaltBytes>& salt, std::string_view secret) {
    std::array<std::uint8_t, SecretDigest::kHashBytes> hash{};
    EVP_MD_CTX* context = EVP_MD_CTX_new();
    const bool done = context != nullptr &&
                      EVP_DigestInit_ex(context, EVP_sha256(), nullptr) == 1 &&
                      EVP_DigestUpdate(context, salt.data(), salt.size()) == 1 &&
                      EVP_DigestUpdate(context, secret.data(), secret.size()) == 1 &&
                      EVP_DigestFinal_ex(context, hash.data(), nullptr) == 1;
    EVP_MD_CTX_free(context);
    if (!done) {
        throw std::runtime_error("SHA-256 is not available from OpenSSL");
    }
    return hash;
}
}  // namespace

SecretDigest SecretDigest::of(std::string_view secret) {
    SecretDigest digest;
    if (RAND_bytes(digest.salt.data(), static_cast<int>(digest.salt.size())) != 1) {
        throw std::runtime_error("OpenSSL could not make a random salt");
    }
    digest.hash = hash_with(digest.salt, secret);
    return digest;
}

bool SecretDigest::matches(std::string_view offered) const {
    const auto offered_hash = hash_with(salt, offered);
    return CRYPTO_memcmp(offered_hash.data(), hash.data(), hash.size()) == 0;
}

std::array<std::uint8_t, SecretDigest::kBytes> SecretDigest::bytes() const {
    std::array<std::uint8_t, kBytes> out{};
    std::copy(salt.begin(), salt.end(), out.begin());
    std::copy(hash.begin(), hash.end(), out.begin() + kSaltBytes);
    return out;
}

std::optional<SecretDigest> SecretDigest::from_bytes(std::string_view bytes) {
    if (bytes.size() != kBytes) {
        return std::nullopt;
    }
    SecretDigest digest;
    std::copy_n(bytes.begin(), kSaltBytes, digest.salt.begin());
    std::copy_n(bytes.begin() + kSaltBytes, kHashBytes, digest.hash.begin());
    return digest;
}

}  // namespace pubsubx
