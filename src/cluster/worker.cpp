#include "worker.hpp"

namespace pubsubx::cluster {

Worker::Worker() : thread_([this] { run(); }) {}

Worker::~Worker() {
    stop();
}

void Worker::post(std::function<void()> task) {
    {
        const std::lock_guard lock{mutex_};
        if (stopping_) {
            return;
        }
        tasks_.push_back(std::move(task));
    }
    wake_.notify_one();
}

void Worker::stop() {
    {
        const std::lock_guard lock{mutex_};
        stopping_ = true;
        tasks_.clear();
    }
    wake_.notify_one();
    if (thread_.joinable()) {
        thread_.join();
    }
}

void Worker::run() {
    for (;;) {
        std::function<void()> task;
        {
            std::unique_lock lock{mutex_};
            wake_.wait(lock, [&] { return stopping_ || !tasks_.empty(); });
            if (stopping_) {
                return;
            }
            task = std::move(tasks_.front());
            tasks_.pop_front();
        }
        task();
    }
}

}  // namespace pubsubx::cluster
