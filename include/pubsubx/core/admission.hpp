// Admission: who may take a name. Checks the CONNECT's name and secret, the original rule
// that a connected name is taken, the secret extension (resume and takeover only with the
// client's secret), and slows down guessing secrets: after a wrong secret, CONNECTs from the
// same source, and to the same name from other sources, are refused unchecked for a while.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <unordered_map>

#include "pubsubx/core/accounts.hpp"
#include "pubsubx/core/client.hpp"
#include "pubsubx/core/config.hpp"
#include "pubsubx/log.hpp"

namespace pubsubx {

// Failures per key, each starting a back-off that doubles with every further failure up to
// a ceiling. An entry is forgotten a while after its last failure; the table is bounded (the
// oldest entry goes first), so a flood of keys costs bounded memory.
template <typename Key, typename Hash = std::hash<Key>>
class Backoff {
  public:
    struct Limits {
        Clock::duration first;
        Clock::duration longest;
        Clock::duration forget_after;
        std::size_t max_entries;
    };
    explicit Backoff(Limits limits) : limits_(limits) {}

    // How much longer `key` is blocked at `now`, or zero.
    Clock::duration blocked_for(const Key& key, TimePoint now) const;
    // Counts a failure and returns the back-off it starts.
    Clock::duration record_failure(const Key& key, TimePoint now);
    // A success: the key starts afresh (the entry ages out as usual).
    void reset(const Key& key);
    std::size_t size() const { return entries_.size(); }

  private:
    struct Entry {
        std::uint32_t failures = 0;
        TimePoint blocked_until{};
        TimePoint last_failure{};
    };
    void forget_old(TimePoint now);

    Limits limits_;
    std::unordered_map<Key, Entry, Hash> entries_;
    // One element per entry, in order of creation: the entries to age out first.
    std::deque<Key> by_age_;
};

struct SourceAddressHash {
    std::size_t operator()(const SourceAddress& address) const noexcept;
};

struct Admission {
    // check_password: the name is a user's and only the slow check can tell whether the
    // password is right (login_gate.hpp); ask again once it has.
    enum class Verdict { admit_new, restore, take_over, refuse, check_password };
    Verdict verdict = Verdict::refuse;
    Client* client = nullptr;
    std::string error_frame;  // with refuse
};

class AdmissionControl {
  public:
    AdmissionControl(const BrokerConfig& config, Logger& logger, BrokerStats& stats);

    // Decides a CONNECT of `name` with `secret` (empty: none) from `source`; `existing` is
    // the client of that name, if any.
    // `vouched`: the connection's client certificate names `name` (mutual TLS with
    // --tls-name-from-cert): a user logs in without its password.
    Admission decide(const SourceAddress& source, std::string_view name, std::string_view secret,
                     Client* existing, TimePoint now, bool vouched = false);
    // With --users: names in the table log in with their password, others are anonymous.
    void attach_accounts(const Accounts* accounts) { accounts_ = accounts; }
    // The slow check found the password of a CONNECT of user `name` wrong: counted and backed
    // off as a wrong secret is. Returns the error frame.
    std::string wrong_password(const SourceAddress& from, std::string_view name, TimePoint now);
    // The source key of the back-off: the IPv4 address, or the /64 prefix of an IPv6 one (one
    // host usually has a whole /64).
    static SourceAddress source_key(const SourceAddress& address);

  private:
    Admission log_in(const SourceAddress& from, std::string_view name, std::string_view password,
                     Client* existing, TimePoint now, bool vouched);
    // The user is who it says: it takes its name (new, restored or taken over).
    Admission logged_in(const SourceAddress& from, std::string_view name, Client* existing);
    // How long a CONNECT of `name` from `from` is refused unchecked; `trusted` is where the
    // client of that name last connected from, if it has a secret.
    Clock::duration backoff_for(const SourceAddress& from, std::string_view name,
                                const SourceAddress* trusted, TimePoint now);
    Admission refuse_throttled(const SourceAddress& from, std::string_view name,
                               Clock::duration wait);
    // Counts a wrong secret or password and starts the back-off of its source and name.
    void record_failure(const SourceAddress& from, std::string_view name, std::string_view what,
                        TimePoint now);
    Admission check_secret(const SourceAddress& from, Client& client, std::string_view secret,
                           TimePoint now);

    const BrokerConfig& config_;
    Logger& logger_;
    BrokerStats& stats_;
    Backoff<SourceAddress, SourceAddressHash> by_source_;
    Backoff<std::string> by_name_;
    const Accounts* accounts_ = nullptr;
};

}  // namespace pubsubx
