// A client's secret as the broker keeps it: a random salt and SHA-256(salt, secret). The
// secret itself is never kept, in memory or in the store (docs/durability.md), so a store
// file or a core dump does not hand out the secrets of the clients it holds.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

namespace pubsubx {

struct SecretDigest {
    static constexpr std::size_t kSaltBytes = 16;
    static constexpr std::size_t kHashBytes = 32;
    static constexpr std::size_t kBytes = kSaltBytes + kHashBytes;

    std::array<std::uint8_t, kSaltBytes> salt{};
    std::array<std::uint8_t, kHashBytes> hash{};

    // A fresh random salt, and the hash of `secret` with it.
    static SecretDigest of(std::string_view secret);
    // Compares in constant time, whatever the offered secret.
    bool matches(std::string_view offered) const;

    // salt then hash: kBytes bytes, as the store keeps them.
    std::array<std::uint8_t, kBytes> bytes() const;
    static std::optional<SecretDigest> from_bytes(std::string_view bytes);
};

}  // namespace pubsubx
