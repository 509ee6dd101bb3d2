// One thread for the cluster's blocking calls (NATS requests, flushes, the key-value store),
// so that the event loop never waits on the network. Tasks run in order; a task reports back
// by posting to the io_context.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace pubsubx::cluster {

class Worker {
  public:
    Worker();
    ~Worker();  // finishes the running task, drops the queued ones, joins
    Worker(const Worker&) = delete;
    Worker& operator=(const Worker&) = delete;

    void post(std::function<void()> task);
    void stop();

  private:
    void run();

    std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<std::function<void()>> tasks_;
    bool stopping_ = false;
    std::thread thread_;
};

}  // namespace pubsubx::cluster
