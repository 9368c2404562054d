#include "shutdown-watch.h"

#include <errno.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

namespace pyworker {

namespace {

constexpr auto STEP = std::chrono::nanoseconds(std::chrono::milliseconds(250));
// How often busy() is asked.

}  // namespace

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
    if (busy_()) {
      // Outside a connection nbdkit_nanosleep() watches only nbdkit's quit flag. While busy,
      // the watch stays in it (a step at a time, the pace busy() is asked at), so that the
      // grace period starts as soon as nbdkit begins to shut down.
      if (nbdkit_nanosleep(0, STEP.count()) < 0 && errno == ESHUTDOWN) break;
      std::lock_guard<std::mutex> lock(mutex_);
      if (stopping_) return;
      continue;
    }
    std::unique_lock<std::mutex> lock(mutex_);
    if (stopped_.wait_for(lock, STEP, [this] { return stopping_; })) return;
  }
  shuttingDown_ = true;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    if (stopped_.wait_for(lock, grace_, [this] { return stopping_; })) return;
  }
  graceExpired_();
}

}  // namespace pyworker
