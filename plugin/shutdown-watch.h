#pragma once
// Notices that nbdkit is shutting down (SIGTERM, SIGINT, nbdkit.shutdown()), which nbdkit
// tells plugins no other way: nbdkit_nanosleep() returns early then. nbdkit waits for every
// request in flight before it exits, so a script callback that never returns would keep nbdkit
// alive forever; after a grace period the supervisor kills such workers.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

namespace pyworker {

class ShutdownWatch {
public:
  ShutdownWatch(std::chrono::milliseconds grace, std::function<bool()> busy,
                std::function<void()> graceExpired);
  // Starts the watching thread (so only from after_fork on). `graceExpired` runs on it, once,
  // if nbdkit is still shutting down (the plugin not unloaded) `grace` after it began. The
  // watch only sleeps in nbdkit while `busy()` (asked four times a second: a call has been in
  // flight for a second or more): nbdkit logs an error for every sleep that a shutdown
  // interrupts, and a shutdown with only quick requests needs no help.
  ~ShutdownWatch() noexcept;
  // Stops watching and joins.

  bool shuttingDown() const { return shuttingDown_.load(); }

private:
  void watch();

  std::chrono::milliseconds grace_;
  std::function<bool()> busy_;
  std::function<void()> graceExpired_;
  std::atomic<bool> shuttingDown_ = false;
  std::mutex mutex_;
  std::condition_variable stopped_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace pyworker
