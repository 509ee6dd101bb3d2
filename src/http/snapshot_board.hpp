// Where the event loop leaves the latest MetricsSnapshot for the HTTP thread. The snapshot is
// immutable once published; the lock covers only the swap and the copy of the pointer, done
// once a second by the loop's timer and once per request by the HTTP thread (never by the
// message routing).
#pragma once

#include <memory>
#include <mutex>
#include <utility>

#include "metrics_snapshot.hpp"

namespace pubsubx::http {

class SnapshotBoard {
  public:
    void publish(std::shared_ptr<const MetricsSnapshot> snapshot) {
        {
            const std::lock_guard lock{mutex_};
            latest_.swap(snapshot);
        }
        // The previous snapshot, if no request holds it, is freed here, outside the lock.
    }
    std::shared_ptr<const MetricsSnapshot> latest() const {
        const std::lock_guard lock{mutex_};
        return latest_;
    }

  private:
    mutable std::mutex mutex_;
    std::shared_ptr<const MetricsSnapshot> latest_;
};

}  // namespace pubsubx::http
