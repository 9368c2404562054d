#include "shutdown-watch.h"

#include <errno.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

namespace pyworker {

ShutdownWatch::ShutdownWatch(std::chrono::milliseconds grace, std::function<bool()> busy,
                             std::function<void()> graceExpired)
    : grace_(grace),
      busy_(std::move(busy)),
      graceExpired_(std::move(graceExpired)),
      thread_([this] { watch(); }) {}

ShutdownWatch::~ShutdownWatch() noexcept {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  stopped_.notify_all();
  thread_.join();
}

void ShutdownWatch::watch() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      if (stopped_.wait_for(lock, std::chrono::seconds(1), [this] { return stopping_; })) return;
    }
    if (!busy_()) continue;
    // Outside a connection nbdkit_nanosleep() watches only nbdkit's quit flag.
    if (nbdkit_nanosleep(1, 0) < 0 && errno == ESHUTDOWN) break;
  }
  shuttingDown_ = true;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    if (stopped_.wait_for(lock, grace_, [this] { return stopping_; })) return;
  }
  graceExpired_();
}

}  // namespace pyworker
