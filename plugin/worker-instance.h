#pragma once
// One serving worker: its process, the RPC thread that talks to it, its lanes, and its health.
// Connections hold it (shared) so that a replaced worker lives until its last connection
// closes. Every call to the worker goes through here, so that one place counts calls in
// flight, applies deadlines, kills on timeout and turns "the worker is gone" into WorkerLost.

#include <array>
#include <atomic>
#include <chrono>
#include <memory>
#include <optional>

#include <kj/function.h>

#include "breakpoint-pause.h"
#include "lane-client.h"
#include "pyworker.capnp.h"
#include "rpc-thread.h"
#include "worker-link.h"
#include "worker-lost.h"
#include "worker-process.h"

namespace pyworker {

class WorkerInstance final : public WorkerLink {
public:
  WorkerInstance(size_t slot, std::unique_ptr<WorkerProcess> process,
                 kj::AutoCloseFd servingSocket,
                 std::optional<std::chrono::milliseconds> callLimit, bool pdb = false);
  // Starts the RPC thread. `slot`: which of the supervisor's workers=N this one is (or
  // replaces). `callLimit` bounds each call until beginServing() (a worker being brought up: see
  // Supervisor); none for a first worker, whose start-up is nbdkit's own. `pdb` (pdb=on):
  // timeout= does not count while a breakpoint of this worker waits (breakpoint-pause.h).
  ~WorkerInstance() noexcept override;
  // A serving worker that ends normally (retired by a reload once its connections have closed)
  // runs the script's cleanup() first, unless cleanUp() already did; then stop().
  KJ_DISALLOW_COPY(WorkerInstance);

  void run(Call call) override;
  rpc::Host::Client host() override { return rpc_.host(); }
  // WorkerLink: an RPC call. Throws WorkerLost, CallTimedOut (the worker was killed), or the
  // call's own kj::Exception.

  void laneCall(kj::FunctionParam<void(rpc::LaneCall::Builder)> build,
                kj::FunctionParam<void(rpc::LaneReply::Reader)> read);
  // A connection's call on a lane (LaneClient::call). Throws WorkerLost, CallTimedOut, or
  // BadReply (the worker, which sent nonsense or hung up on the call alive, is killed).

  void handleOpened() { handlesOpen_++; }
  // The script's open() succeeded on a lane (handle-opening.h): one more connection here.
  void closeHandle(uint64_t id) noexcept;
  // The script's close() for a handle that is not kept (spread or re-open decided against
  // it, or its connection's own close call failed), on a lane; nothing when the worker is
  // lost. Failures are logged.
  void handleClosed() { handlesOpen_--; }
  // A handle's close call has been answered (Connection::close).
  int64_t handlesOpen() const { return handlesOpen_.load(); }

  struct ScriptFacts {
    // What after_fork's reply says of the script as it serves: which callbacks a new
    // connection makes before open it has (nbdkit python's answer for one it has not needs
    // no round trip), and the can_* answers that run no script code.
    bool preconnect = true;
    bool listExports = true;
    bool defaultExport = true;
    bool blockSize = true;          // without: no sizes (all zero)
    bool exportDescription = true;  // without: none
    std::array<int32_t, 10> fixedAnswers = {-1, -1, -1, -1, -1, -1, -1, -1, -1, -1};
    // By rpc::Query: the answer the worker gives every connection without running script
    // code (the script has no such callback; checked as any answer when used), or -1: ask.
  };
  void setScriptFacts(ScriptFacts facts) { facts_ = facts; }
  // While it is brought up, before any connection can see it.
  const ScriptFacts& scriptFacts() const { return facts_; }
  // Connections it serves (a spread connection counts on each of its workers).

  void beginServing(std::optional<std::chrono::milliseconds> timeout);
  // Brought up: from now on a call that takes longer than timeout= kills the worker
  // (CallTimedOut), and the worker runs cleanup() when it ends normally.

  void cleanUp();
  // The script's cleanup(), once (nbdkit's cleanup callback, or retirement). Throws as run().

  void reject();
  // The worker sent a reply that no correct worker sends (reply-checks.h): it is killed, so
  // that every later call on it fails and new connections get another worker.

  bool isLost() const { return lost_.load(); }
  // Dead, killed, or no longer reachable: it takes no new connection.
  bool canServe() { return !isLost() && !process_->hasExited(); }

  WorkerProcess& process() { return *process_; }
  pid_t pid() const { return process_->pid(); }
  size_t slot() const { return slot_; }

  uint64_t callsInFlight() const { return callsStarted_.load() - callsFinished_.load(); }
  bool hasStalledCall(std::chrono::steady_clock::time_point now);
  // Whether calls have been in flight for STALL_TIME with none finishing meanwhile (asked
  // by the shutdown watch only, a few times a second).

  void stop();
  // Ends the RPC thread and the worker now, even if connections still hold this instance
  // (no cleanup()); what the worker prints while it exits still reaches the log.

private:
  enum class Loss { DISCONNECTED, INVALID_REPLY, TIMED_OUT };

  void lose(Loss cause);
  // The one health transition: the first cause wins, the worker is killed (if it is not dead
  // already) and an invalid reply is logged; later calls fail at once with lostError().
  WorkerLost lostError();
  WorkerLost lostBeforeCall();
  [[noreturn]] void timedOut();

  const size_t slot_;
  std::unique_ptr<WorkerProcess> process_;
  std::atomic<bool> lost_ = false;
  std::atomic<bool> killedHere_ = false;  // lose() sent it SIGKILL
  std::atomic<bool> serving_ = false;     // beginServing() was called
  std::atomic<bool> cleanedUp_ = false;   // cleanUp() was called
  std::atomic<Loss> cause_ = Loss::DISCONNECTED;
  std::atomic<int64_t> callLimitMilliseconds_ = 0;  // 0: none
  std::atomic<uint64_t> callsStarted_ = 0;
  std::atomic<uint64_t> callsFinished_ = 0;
  std::atomic<int64_t> handlesOpen_ = 0;
  ScriptFacts facts_;
  uint64_t lastSeenFinished_ = 0;  // the shutdown watch's thread only, as is:
  std::chrono::steady_clock::time_point lastProgress_ = std::chrono::steady_clock::now();
  BreakpointPause pause_;
  LaneClient lanes_;
  RpcThread rpc_;
};

}  // namespace pyworker
