#include "pubsubx/core/admission.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "pubsubx/protocol.hpp"

namespace pubsubx {

namespace {

constexpr std::string_view kInvalidName{
    "ERROR: Invalid name (1 to 64 bytes, no spaces or control characters)"};
constexpr std::string_view kInvalidSecret{
    "ERROR: Invalid secret (1 to 128 bytes, no spaces or control characters)"};
constexpr std::string_view kSecretRequired{
    "ERROR: Not authorized: this server requires CONNECT <name> <secret>"};

using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;

// A source that guessed wrong waits 100 ms, doubling per failure up to 30 s, before any of
// its CONNECTs with a secret is checked again. A name is guarded more lightly (up to 5 s):
// others than its rightful owner may be the ones failing, and the owner reconnecting from
// where it last connected is not held up by the name's back-off at all.
constexpr Backoff<SourceAddress, SourceAddressHash>::Limits kSourceLimits{
    milliseconds{100}, seconds{30}, minutes{10}, 65'536};
constexpr Backoff<std::string>::Limits kNameLimits{milliseconds{100}, seconds{5}, minutes{10},
                                                   65'536};

Admission refuse(std::string_view error_frame) {
    return {Admission::Verdict::refuse, nullptr, std::string{error_frame}};
}

}  // namespace

SourceAddress SourceAddress::ipv4(std::uint32_t host_order) {
    SourceAddress address;
    address.bytes[10] = 0xff;
    address.bytes[11] = 0xff;
    for (int i = 0; i < 4; ++i) {
        address.bytes[12 + i] = static_cast<std::uint8_t>(host_order >> (24 - 8 * i));
    }
    return address;
}

bool SourceAddress::is_ipv4() const {
    return std::all_of(bytes.begin(), bytes.begin() + 10, [](auto b) { return b == 0; }) &&
           bytes[10] == 0xff && bytes[11] == 0xff;
}

std::string SourceAddress::text() const {
    char text[48];
    if (is_ipv4()) {
        std::snprintf(text, sizeof text, "%u.%u.%u.%u", bytes[12], bytes[13], bytes[14], bytes[15]);
        return text;
    }
    std::string out;
    for (int i = 0; i < 16; i += 2) {
        std::snprintf(text, sizeof text, "%s%x", i == 0 ? "" : ":",
                      static_cast<unsigned>(bytes[i] << 8 | bytes[i + 1]));
        out += text;
    }
    return out;
}

std::size_t SourceAddressHash::operator()(const SourceAddress& address) const noexcept {
    std::uint64_t high = 0;
    std::uint64_t low = 0;
    std::memcpy(&high, address.bytes.data(), 8);
    std::memcpy(&low, address.bytes.data() + 8, 8);
    return std::hash<std::uint64_t>{}(high * 0x9e3779b97f4a7c15ULL ^ low);
}

template <typename Key, typename Hash>
Clock::duration Backoff<Key, Hash>::blocked_for(const Key& key, TimePoint now) const {
    const auto found = entries_.find(key);
    if (found == entries_.end() || found->second.blocked_until <= now) {
        return Clock::duration::zero();
    }
    return found->second.blocked_until - now;
}

template <typename Key, typename Hash>
Clock::duration Backoff<Key, Hash>::record_failure(const Key& key, TimePoint now) {
    forget_old(now);
    auto found = entries_.find(key);
    if (found == entries_.end()) {
        if (limits_.max_entries != 0 && entries_.size() >= limits_.max_entries) {
            entries_.erase(by_age_.front());
            by_age_.pop_front();
        }
        found = entries_.emplace(key, Entry{}).first;
        by_age_.push_back(key);
    }
    Entry& entry = found->second;
    entry.failures = std::min<std::uint32_t>(entry.failures + 1, 32);
    Clock::duration delay = limits_.first;
    for (std::uint32_t i = 1; i < entry.failures && delay < limits_.longest; ++i) {
        delay *= 2;
    }
    delay = std::min(delay, limits_.longest);
    entry.blocked_until = now + delay;
    entry.last_failure = now;
    return delay;
}

template <typename Key, typename Hash>
void Backoff<Key, Hash>::reset(const Key& key) {
    const auto found = entries_.find(key);
    if (found != entries_.end()) {
        found->second.failures = 0;
        found->second.blocked_until = TimePoint{};
    }
}

// Each entry has exactly one place in by_age_. A look at the two oldest per failure keeps
// the work O(1): one that is still in use moves to the back, and the bound on entries caps
// what waits meanwhile.
template <typename Key, typename Hash>
void Backoff<Key, Hash>::forget_old(TimePoint now) {
    for (int looked = 0; looked < 2 && !by_age_.empty(); ++looked) {
        const auto found = entries_.find(by_age_.front());
        if (now - found->second.last_failure >= limits_.forget_after) {
            entries_.erase(found);
        } else {
            by_age_.push_back(by_age_.front());
        }
        by_age_.pop_front();
    }
}

template class Backoff<SourceAddress, SourceAddressHash>;
template class Backoff<std::string>;

AdmissionControl::AdmissionControl(const BrokerConfig& config, Logger& logger, BrokerStats& stats)
    : config_(config),
      logger_(logger),
      stats_(stats),
      by_source_(kSourceLimits),
      by_name_(kNameLimits) {}

SourceAddress AdmissionControl::source_key(const SourceAddress& address) {
    if (address.is_ipv4()) {
        return address;
    }
    SourceAddress prefix = address;
    std::fill(prefix.bytes.begin() + 8, prefix.bytes.end(), 0);
    return prefix;
}

Admission AdmissionControl::decide(const SourceAddress& source, std::string_view name,
                                   std::string_view secret, Client* existing, TimePoint now,
                                   bool vouched) {
    if (!is_valid_name(name)) {
        logger_.error("Refused a CONNECT with an invalid name of ", name.size(), " bytes");
        ++stats_.bad_connects;
        return refuse(kInvalidName);
    }
    if (!secret.empty() && !is_valid_secret(secret)) {
        logger_.error("Refused CONNECT '", name, "': invalid secret");
        ++stats_.bad_connects;
        return refuse(kInvalidSecret);
    }
    if (accounts_ != nullptr) {
        if (accounts_->user(name) != nullptr) {
            return log_in(source, name, secret, existing, now, vouched);
        }
        if (!accounts_->allow_anonymous()) {
            const Clock::duration wait = backoff_for(source, name, nullptr, now);
            if (wait > Clock::duration::zero()) {
                return refuse_throttled(source, name, wait);
            }
            record_failure(source, name, "not a user (--users without --allow-anonymous)", now);
            return refuse(kNotAuthorized);
        }
    }
    if (secret.empty() && config_.require_secret) {
        ++stats_.auth_failures;
        logger_.error("Refused CONNECT '", name, "' without a secret (--require-secret)");
        return refuse(kSecretRequired);
    }
    if (existing == nullptr) {
        return {Admission::Verdict::admit_new, nullptr, {}};
    }
    Client& client = *existing;
    if (client.connected() && (secret.empty() || client.credentials_ == nullptr)) {
        logger_.error("Refused CONNECT '", name, "': the name is connected already");
        return refuse(kNameTaken);
    }
    if (client.credentials_ == nullptr) {
        return {Admission::Verdict::restore, &client, {}};
    }
    return check_secret(source, client, secret, now);
}

Clock::duration AdmissionControl::backoff_for(const SourceAddress& from, std::string_view name,
                                              const SourceAddress* trusted, TimePoint now) {
    const SourceAddress source = source_key(from);
    const Clock::duration wait = by_source_.blocked_for(source, now);
    if (wait != Clock::duration::zero() || (trusted != nullptr && source == source_key(*trusted))) {
        return wait;
    }
    return by_name_.blocked_for(std::string{name}, now);
}

Admission AdmissionControl::refuse_throttled(const SourceAddress& from, std::string_view name,
                                             Clock::duration wait) {
    ++stats_.auth_throttled;
    logger_.error("Refused CONNECT '", name, "' from ", from.text(),
                  " unchecked: too many failed attempts (retry in ", seconds_text(wait), ")");
    return refuse(std::string{kNotAuthorized} + ": too many failed attempts, retry in " +
                  seconds_text(wait));
}

void AdmissionControl::record_failure(const SourceAddress& from, std::string_view name,
                                      std::string_view what, TimePoint now) {
    ++stats_.auth_failures;
    const Clock::duration source_wait = by_source_.record_failure(source_key(from), now);
    by_name_.record_failure(std::string{name}, now);
    logger_.error("Refused CONNECT '", name, "' from ", from.text(), ": ", what,
                  "; that source waits ", seconds_text(source_wait),
                  " before its next attempt is checked");
}

// A user's password is checked before anything else about the name: the back-off first (the
// password is not even looked at during it), then the password this broker last found right,
// and only then the slow check, off the event loop.
Admission AdmissionControl::log_in(const SourceAddress& from, std::string_view name,
                                   std::string_view password, Client* existing, TimePoint now,
                                   bool vouched) {
    if (vouched) {
        return logged_in(from, name, existing);
    }
    const Credentials* credentials = existing != nullptr ? existing->credentials_.get() : nullptr;
    const Clock::duration wait = backoff_for(
        from, name, credentials != nullptr ? &credentials->trusted_source : nullptr, now);
    if (wait > Clock::duration::zero()) {
        return refuse_throttled(from, name, wait);
    }
    if (password.empty()) {
        record_failure(from, name, "no password given for a user", now);
        // Without anonymous clients, the same answer as for a name that is no user's.
        return refuse(accounts_->allow_anonymous()
                          ? std::string{kNotAuthorized} +
                                ": this name needs its password (CONNECT <name> <password>)"
                          : std::string{kNotAuthorized});
    }
    switch (accounts_->known_password(name, password)) {
        case Accounts::Known::unknown:
            return {Admission::Verdict::check_password, nullptr, {}};
        case Accounts::Known::wrong:
            record_failure(from, name, "wrong password", now);
            return refuse(kNotAuthorized);
        case Accounts::Known::right:
            break;
    }
    return logged_in(from, name, existing);
}

Admission AdmissionControl::logged_in(const SourceAddress& from, std::string_view name,
                                      Client* existing) {
    by_source_.reset(source_key(from));
    by_name_.reset(std::string{name});
    if (existing == nullptr) {
        return {Admission::Verdict::admit_new, nullptr, {}};
    }
    return {existing->connected() ? Admission::Verdict::take_over : Admission::Verdict::restore,
            existing,
            {}};
}

std::string AdmissionControl::wrong_password(const SourceAddress& from, std::string_view name,
                                             TimePoint now) {
    record_failure(from, name, "wrong password", now);
    return std::string{kNotAuthorized};
}

// During a back-off the secret is not even compared: the answer is the same whichever secret
// the attempt carries, so guessing gets one real try per back-off period.
Admission AdmissionControl::check_secret(const SourceAddress& from, Client& client,
                                         std::string_view secret, TimePoint now) {
    const Clock::duration wait =
        backoff_for(from, client.name_, &client.credentials_->trusted_source, now);
    if (wait > Clock::duration::zero()) {
        return refuse_throttled(from, client.name_, wait);
    }
    if (!client.credentials_->secret.matches(secret)) {
        record_failure(from, client.name_, secret.empty() ? "no secret given" : "wrong secret",
                       now);
        return refuse(kNotAuthorized);
    }
    by_source_.reset(source_key(from));
    by_name_.reset(client.name_);
    return {client.connected() ? Admission::Verdict::take_over : Admission::Verdict::restore,
            &client,
            {}};
}

}  // namespace pubsubx
