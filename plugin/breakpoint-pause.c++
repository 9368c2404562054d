#include "breakpoint-pause.h"

namespace pyworker {

bool BreakpointPause::waits() {
  if (!enabled_) return false;
  std::lock_guard<std::mutex> lock(mutex_);
  ++waiting_;
  return true;
}

void BreakpointPause::resumed() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (waiting_ == 0) return;  // one that did not count, or a worker's mistake
  --waiting_;
  lastEnd_ = Clock::now();
}

std::optional<BreakpointPause::Clock::time_point> BreakpointPause::laterDeadline(
    std::chrono::milliseconds limit) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto now = Clock::now();
  if (waiting_ > 0) return now + limit;
  if (lastEnd_ && *lastEnd_ + limit > now) return *lastEnd_ + limit;
  return std::nullopt;
}

}  // namespace pyworker
