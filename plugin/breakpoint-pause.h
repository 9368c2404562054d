#pragma once
// pdb=on: timeout= does not count while a request of a worker waits at a breakpoint or is
// being stepped (worker/pdb-session.h tells the plugin, Host.breakpointWaits/Resumed). It is
// the whole worker that pauses: the timeout would kill the worker, and with it the request
// under the debugger.

#include <chrono>
#include <mutex>
#include <optional>

namespace pyworker {

class BreakpointPause {
public:
  using Clock = std::chrono::steady_clock;

  explicit BreakpointPause(bool enabled) : enabled_(enabled) {}
  // Disabled (pdb=off): the worker's word is ignored, so that no worker can pause timeout=
  // unless the user asked for pdb.

  bool waits();
  void resumed();
  // From the worker (any thread). waits() says whether the pause counts (pdb=on).

  std::optional<Clock::time_point> laterDeadline(std::chrono::milliseconds limit) const;
  // Asked when a call's deadline has passed: the new one if a breakpoint waits now (`limit`
  // from now, when it is asked again) or one ended less than `limit` ago (`limit` after that
  // end: the request gets its whole time once it runs again), else none: it timed out.

private:
  const bool enabled_;
  mutable std::mutex mutex_;
  unsigned waiting_ = 0;            // under mutex_
  std::optional<Clock::time_point> lastEnd_;  // under mutex_
};

}  // namespace pyworker
