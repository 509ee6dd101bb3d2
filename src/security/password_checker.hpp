// --users: checks CONNECT passwords against their scrypt hashes on a thread of its own, so
// the event loop never waits for one (a check takes about 0.1 s and 32 MiB). At most a few
// checks wait at a time; more CONNECTs than that are refused "busy" at once, so a flood of
// logins costs bounded memory and delays nobody's traffic.
#pragma once

#include <asio/io_context.hpp>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>
#include <string>
#include <thread>

#include "pubsubx/broker.hpp"
#include "pubsubx/log.hpp"
#include "pubsubx/login_gate.hpp"

namespace pubsubx::security {

class PasswordChecker final : public LoginGate {
  public:
    static constexpr std::size_t kMaxWaiting = 32;

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

    asio::io_context& io_;
    Broker& broker_;
    Logger& logger_;
    std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<Check> waiting_;  // guarded by mutex_
    bool stopping_ = false;      // guarded by mutex_
    std::thread thread_;
};

}  // namespace pubsubx::security
