#pragma once
// Notices that nbdkit is shutting down (SIGTERM, SIGINT, nbdkit.shutdown()), which nbdkit
// tells plugins no other way than by ending nbdkit_nanosleep() early, with an error in the log
// ("aborting sleep because of server shut down") that would blame pyworker for the user's
// Ctrl-C. So the watch polls the pipe that ends those sleeps itself (quitPipe()), and sleeps in
// nbdkit only if it cannot find it. nbdkit waits for every request in flight before it exits,
// so a script callback that never returns would keep nbdkit alive forever; after a grace
// period the supervisor kills such workers.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

#include <kj/io.h>

namespace pyworker {

class ShutdownWatch {
public:
  ShutdownWatch(std::chrono::milliseconds grace, std::function<bool()> busy,
                std::function<void()> graceExpired);
  // Starts the watching thread (so only from after_fork on, when nbdkit has made its quit
  // pipe, and while nothing else makes pipes). `graceExpired` runs on it, once, if nbdkit is
  // still shutting down (the plugin not unloaded) `grace` after it began. The watch only
  // looks while `busy()` (asked four times a second: a call has been in flight for a second or
  // more): a shutdown with only quick requests needs no help.
  ~ShutdownWatch() noexcept;
  // Stops watching and joins.

  bool shuttingDown() const { return shuttingDown_.load(); }

private:
  void watch();
  bool quitWithin(std::chrono::milliseconds limit);
  // Whether nbdkit begins (or has begun) to quit within `limit`.

  kj::AutoCloseFd quit_;
  // A copy of the read end of nbdkit's quit pipe, or none: nbdkit_nanosleep() then.

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
