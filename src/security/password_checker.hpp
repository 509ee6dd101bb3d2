// --users: checks CONNECT passwords against their scrypt hashes on a thread of its own, so
// the event loop never waits for one (a check takes about 0.1 s and 32 MiB). At most a few
// checks wait at a time; more CONNECTs than that are refused "busy" at once, so a flood of
// logins costs bounded memory and delays nobody's traffic. A name has one check at a time
// and a source a few: the back-off after a wrong password (admission.hpp) starts only when
// its check ends, and guesses sent side by side must not all be checked before it does.
#pragma once

#include <asio/io_context.hpp>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "pubsubx/broker.hpp"
#include "pubsubx/log.hpp"
#include "pubsubx/login_gate.hpp"

namespace pubsubx::security {

class PasswordChecker final : public LoginGate {
  public:
    static constexpr std::size_t kMaxWaiting = 32;
    static constexpr std::size_t kMaxPerSource = 4;

    PasswordChecker(asio::io_context& io, Broker& broker, Logger& logger);
    // Stops the thread; checks that had not finished are never answered.
    ~PasswordChecker();
    PasswordChecker(const PasswordChecker&) = delete;
    PasswordChecker& operator=(const PasswordChecker&) = delete;

    void check_password(std::string name, std::string password, const SourceAddress& source,
                        Done done) override;

  private:
    struct Check {
        std::string name;
        std::string password_hash;
        std::string password;
        SourceAddress source;
        Done done;
    };
    void run();
    void answer(Check& check, bool right);
    // Why a check of `name` from `source` cannot start now, or empty.
    std::string refusal(const std::string& name, const SourceAddress& source) const;

    asio::io_context& io_;
    Broker& broker_;
    Logger& logger_;
    // The checks waiting or running, by name and by source key: the event loop's alone.
    std::unordered_set<std::string> names_checked_;
    std::unordered_map<SourceAddress, std::size_t, SourceAddressHash> checks_by_source_;
    std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<Check> waiting_;  // guarded by mutex_
    bool stopping_ = false;      // guarded by mutex_
    std::thread thread_;
};

}  // namespace pubsubx::security
