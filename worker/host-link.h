// The worker's line back to the plugin's `Host` (debug, error, shutdown), usable from any
// thread. The capability lives on the event-loop thread; other threads reach it through the
// loop's kj::Executor, which also keeps these calls ahead of the reply of the RPC callback
// that made them. A lane call's own Host calls are captured instead (HostCallCapture) and
// travel in its reply: they take effect in nbdkit before the call returns, as in-process.
#pragma once

#include "pyworker.capnp.h"

#include <kj/async.h>
#include <kj/mutex.h>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace pyworker {

struct HostCall {
  enum Kind { DEBUG, ERROR, SHUTDOWN } kind;
  std::string text;  // empty for SHUTDOWN
};

class HostCallCapture {
  // While one lives, this thread's Host calls are kept in it, in order, instead of being sent:
  // a lane call hands them back with its reply, and the plugin makes them on the nbdkit
  // thread that made the call before the call returns (so a debug line precedes the request's
  // end, and nbdkit.shutdown() is seen before the connection reads its next request). Past
  // MAX_BYTES of text, that one and all later ones are sent as usual: a reply stays small.
public:
  static constexpr size_t MAX_BYTES = 1024 * 1024;

  HostCallCapture();
  ~HostCallCapture();
  HostCallCapture(const HostCallCapture&) = delete;
  HostCallCapture& operator=(const HostCallCapture&) = delete;

  const std::vector<HostCall>& calls() const { return calls_; }

  bool keep(HostCall::Kind kind, const std::string& text);
  // Whether it was kept (else the caller sends it). HostLink's business.

private:
  std::vector<HostCall> calls_;
  size_t bytes_ = 0;
  bool full_ = false;
  HostCallCapture* saved_;
};

constexpr size_t MAX_HOST_CALLS_IN_FLIGHT = 1024;
// Host calls sent and not answered yet. A script calling nbdkit.debug() in a loop waits past
// this, as nbdkit_debug() waits for a slow stderr in-process: the calls queued here (and the
// answers the plugin must keep until they are finished) stay bounded.

class HostLink {
public:
  explicit HostLink(const kj::Executor& loop);
  // Built on the loop thread.

  void setHost(rpc::Host::Client host);
  // Loop thread only: load() and afterFork() hand over the current Host.
  void disconnect();
  // Loop thread only: the serving connection is gone; host calls become no-ops.

  void debug(const std::string& message);
  void error(const std::string& message);
  void shutdown();
  // Any thread. Callers holding the GIL release it around these (they may block: briefly, or
  // while MAX_HOST_CALLS_IN_FLIGHT are unanswered; never on the loop thread).

  void breakpointWaits(const std::string& where, const std::string& file, unsigned line);
  void breakpointResumed();
  // pdb=on (pdb-session.h): sent at once, even during a lane call (never captured): the
  // plugin logs where the breakpoint waits, and timeout= does not count until it resumes.
  // Not on the loop thread, which cannot send while the script holds it.

  bool onLoopThread() const { return std::this_thread::get_id() == loopThread; }
  // The thread that runs load, config and the other process-wide start-up callbacks.

private:
  template <typename Send>
  void onLoop(Send&& send);
  void answered();

  const kj::Executor& loop;
  std::thread::id loopThread;
  kj::Maybe<rpc::Host::Client> host;  // touched only on the loop thread
  std::atomic<bool> gone{false};
  std::mutex mutex;
  std::condition_variable room;
  size_t inFlight = 0;  // under `mutex`
};

}  // namespace pyworker
