#include "password_checker.hpp"

#include <asio/post.hpp>

#include "password_hash.hpp"
#include "pubsubx/protocol.hpp"

namespace pubsubx::security {

PasswordChecker::PasswordChecker(asio::io_context& io, Broker& broker, Logger& logger)
    : io_(io), broker_(broker), logger_(logger), thread_([this] { run(); }) {}

PasswordChecker::~PasswordChecker() {
    {
        const std::lock_guard lock{mutex_};
        stopping_ = true;
    }
    wake_.notify_one();
    thread_.join();
}

// On the event loop. The hash is taken now: a reload meanwhile makes the broker ask again.
void PasswordChecker::check_password(std::string name, std::string password,
                                     const SourceAddress& source, Done done) {
    const std::string* const hash = broker_.password_hash_of(name);
    if (hash == nullptr) {
        // The users file changed since the CONNECT was read: the broker decides it anew.
        done({});
        return;
    }
    if (std::string error_frame = refusal(name, source); !error_frame.empty()) {
        done(error_frame);
        return;
    }
    {
        const std::lock_guard lock{mutex_};
        if (waiting_.size() >= kMaxWaiting) {
            logger_.error("Refused CONNECT '", name, "' from ", source.text(), ": ", kMaxWaiting,
                          " password checks are waiting already");
            done("ERROR: Server busy checking passwords; retry in a moment");
            return;
        }
        names_checked_.insert(name);
        ++checks_by_source_[AdmissionControl::source_key(source)];
        waiting_.push_back({std::move(name), *hash, std::move(password), source, std::move(done)});
    }
    wake_.notify_one();
}

std::string PasswordChecker::refusal(const std::string& name, const SourceAddress& source) const {
    if (names_checked_.contains(name)) {
        logger_.error("Refused CONNECT '", name, "' from ", source.text(),
                      ": a login of that name is being checked");
        return "ERROR: Server busy: a login of this name is being checked; retry in a moment";
    }
    const auto found = checks_by_source_.find(AdmissionControl::source_key(source));
    if (found != checks_by_source_.end() && found->second >= kMaxPerSource) {
        logger_.error("Refused CONNECT '", name, "' from ", source.text(), ": ", kMaxPerSource,
                      " logins from there are being checked");
        return "ERROR: Server busy checking passwords from your address; retry in a moment";
    }
    return {};
}

void PasswordChecker::run() {
    for (;;) {
        Check check;
        {
            std::unique_lock lock{mutex_};
            wake_.wait(lock, [&] { return stopping_ || !waiting_.empty(); });
            if (stopping_) {
                return;
            }
            check = std::move(waiting_.front());
            waiting_.pop_front();
        }
        bool right = false;
        try {
            right = verify_password(check.password, check.password_hash);
        } catch (const PasswordHashError&) {
            right = false;  // the users file's parser refuses such hashes: cannot happen
        }
        asio::post(io_,
                   [this, check = std::move(check), right]() mutable { answer(check, right); });
    }
}

void PasswordChecker::answer(Check& check, bool right) {
    names_checked_.erase(check.name);
    const auto source = checks_by_source_.find(AdmissionControl::source_key(check.source));
    if (--source->second == 0) {
        checks_by_source_.erase(source);
    }
    const std::string error_frame = broker_.password_checked(
        check.name, check.password_hash, check.password, right, check.source, Clock::now());
    check.done(error_frame);
}

}  // namespace pubsubx::security
