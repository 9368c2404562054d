#pragma once
// Owns the workers through nbdkit's lifecycle: the first workers are spawned and configured on
// the main thread before the fork and served from RPC threads after it; a worker that dies is
// replaced by a new one brought up with exactly what nbdkit gave (bring-up.h), and a reload
// brings up a new generation. No lock that other callers need is held while a worker is
// spawned or configured: a worker being brought up is visible to the shutdown watch like any
// other, and bounded in time.

#include <kj/common.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "config-phase-link.h"
#include "reload-watch.h"
#include "shutdown-watch.h"
#include "worker-instance.h"
#include "worker-process.h"
#include "worker-setup.h"

namespace pyworker {

class Supervisor {
  // With workers=N, N independent workers ("slots"), each configured the same way; each slot
  // replaces its own dead worker.
public:
  explicit Supervisor(WorkerSetup setup);
  ~Supervisor() noexcept;
  KJ_DISALLOW_COPY(Supervisor);

  const ScriptInfo& start();
  // Before the fork: spawns every worker, loads the script and replays its config keys in
  // each. Throws ScriptFailed (already reported) when the script fails in any of them.

  void forEachWorker(const std::function<void(WorkerLink&)>& call);
  // Process-wide callbacks that every worker must see (config_complete, thread_model,
  // get_ready): before the fork through the config-phase links, after it to every
  // live worker (a dead one is not replaced for this).

  void cleanUp();
  // nbdkit's cleanup: the script's cleanup() in every live worker (a dead one is not replaced
  // for this), once; a worker retired by a reload runs it when it ends (WorkerInstance).

  WorkerLink& link();
  // Before the fork: the first worker's config-phase link, for questions any worker can
  // answer (dump_plugin).

  enum class Purpose { BEFORE_OPEN, OPEN };
  std::shared_ptr<WorkerInstance> instance(Purpose purpose);
  // After the fork: a worker for a new connection's calls (preconnect … open). Slots take turns,
  // one per open; a slot whose worker died on its turn is given a replacement first; otherwise
  // the live worker with the fewest calls in flight answers, then the one serving the fewest
  // connections (ties: the slot whose turn it is), so that a stopped or busy worker does not
  // hold up new connections the others can serve, and a worker that has finished its share
  // takes the next connection.
  // Throws (already reported) when no worker can be had.

  std::shared_ptr<WorkerInstance> instanceOfSlot(size_t slot);
  // After the fork: slot `slot`'s worker (for a connection that re-opens where it was): after
  // a reload the new generation's, after a death its replacement (brought up first if need be,
  // as for instance()). Throws (already reported) when no worker can be had.

  bool recoverByReopening() const { return setup_.recoverByReopening; }
  bool maySpread() const;
  // spread=on, more than one worker, and a PARALLEL script: a connection may be spread (if its
  // script answers can_multi_conn True).
  size_t slotCount() const { return slots_.size(); }
  bool isCurrent(const std::shared_ptr<WorkerInstance>& instance);
  // Whether `instance` is still its slot's worker (not replaced after a death, nor retired by a
  // reload).

  void endConfigPhase();
  // After get_ready: the config-phase connections (and their event loop) must not outlive the
  // fork, so they are closed here; the workers keep running.

  void startServing();
  // In after_fork: starts each worker's RPC thread on its serving connection and tells it.

  void setThreadModel(int model) { threadModel_ = model; }
  // What nbdkit was told; a replacement worker must agree.

private:
  struct Slot {
    // Before the fork.
    std::unique_ptr<WorkerProcess> firstProcess;
    kj::AutoCloseFd firstServingSocket;
    std::unique_ptr<ConfigPhaseLink> configLink;
    // After the fork (guarded by mutex_).
    std::shared_ptr<WorkerInstance> current;
    bool replacing = false;  // a thread is bringing up its replacement, without mutex_
  };

  std::shared_ptr<WorkerInstance> replacementFor(Slot& slot, std::unique_lock<std::mutex>& lock);
  // With mutex_ held by `lock` (released while the replacement is brought up).
  std::shared_ptr<WorkerInstance> bringUp(size_t slot, const char* what);
  // A new worker taken through every step, load to after_fork, within the bring-up limit.
  // Throws (reported). Called without mutex_.
  void reload(const std::string& reason);
  // A new generation of workers with the script as it is now; new connections go to it, the
  // old workers serve their connections until they close. On failure nothing changes.
  std::unique_ptr<WorkerProcess> spawn(bool withConfigSocket, const char* what);
  // A new worker process (debug-wait= says so on stderr).
  std::vector<std::shared_ptr<WorkerInstance>> liveInstances();
  // After the fork: each slot's current worker that is not lost (taken under mutex_).
  bool anyCallStalled();
  void killAllWorkers();
  // Shutdown took longer than the grace period: callbacks that never return keep nbdkit from
  // exiting, and only killing their workers fails them.

  WorkerSetup setup_;
  ScriptInfo info_;
  int threadModel_ = -1;
  std::vector<Slot> slots_;
  std::unique_ptr<kj::AsyncIoContext> configIo_;
  // The main thread's event loop for the config-phase links (before them, gone after them).
  bool forked_ = false;

  std::mutex mutex_;
  std::condition_variable slotChanged_;
  // A replacement has been brought up (or failed to be).
  bool stopping_ = false;
  size_t nextSlot_ = 0;
  std::deque<std::chrono::steady_clock::time_point> recentDeaths_;
  // Of all slots: a script that kills its workers does so in every slot.
  std::vector<std::weak_ptr<WorkerInstance>> instances_;
  // Every worker still serving a connection or being brought up, replaced ones included.
  std::vector<std::weak_ptr<WorkerInstance>> bringingUp_;
  std::unique_ptr<ShutdownWatch> shutdownWatch_;
  std::unique_ptr<ReloadWatch> reloadWatch_;
  std::optional<FileStamp> scriptAsLoaded_;
  // The script as the first workers loaded it: a change before the reload watch begins (at
  // after_fork) is seen when it does.
};

}  // namespace pyworker
