#pragma once
// Owns the workers and the links to them through nbdkit's lifecycle: the first worker is
// spawned and configured on the main thread before the fork and served from an RPC thread
// after it; when a worker dies, the next connection gets a fresh one, configured by replaying
// exactly what nbdkit gave.

#include <kj/common.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "config-phase-link.h"
#include "serving-link.h"
#include "reload-watch.h"
#include "shutdown-watch.h"
#include "worker-process.h"

namespace pyworker {

struct ScriptInfo {
  int apiVersion = 0;
  std::string pythonVersion;
  int pep384AbiVersion = 0;
};

struct WorkerSetup {
  // Everything needed to bring up a worker configured exactly as nbdkit configured us.
  std::string workerPath;
  std::string script;
  std::vector<std::pair<std::string, std::string>> scriptConfig;
  std::optional<std::chrono::milliseconds> timeout;
  std::optional<uint64_t> memoryLimit;
  unsigned maxRestarts = 5;
  std::chrono::seconds restartWindow{60};
  bool debugWait = false;
  unsigned workers = 1;
  bool reloadOnChange = false;
  std::optional<std::string> reloadTrigger;  // absolute
};

class WorkerInstance {
  // One serving worker: its process and the RPC thread that talks to it. Connections hold
  // it (shared) so that a replaced worker lives until its last connection closes.
public:
  WorkerInstance(std::unique_ptr<WorkerProcess> process, kj::AutoCloseFd servingSocket);
  ~WorkerInstance() noexcept;
  // Stops the RPC thread, then the process.

  ServingLink& link() { return link_; }
  bool isBroken() const { return link_.isBroken(); }
  bool hasStalledCall();
  // Whether a call has been in flight since the previous time this was asked with none
  // finishing in between (asked once a second by the shutdown watch only).
  WorkerProcess& process() { return *process_; }

  void stop();
  // Ends the RPC thread and the worker now, even if connections still hold this instance:
  // at unload, when nbdkit quits without closing them, nothing may run on after it.

private:
  std::unique_ptr<WorkerProcess> process_;
  ServingLink link_;
  ServingLink::Progress lastSeen_;  // the shutdown watch's thread only
};

class Supervisor {
  // With workers=N, N independent workers ("slots"), each configured the same way; new
  // connections go round-robin to the slots, and each slot replaces its own dead worker.
public:
  explicit Supervisor(WorkerSetup setup);
  ~Supervisor() noexcept;
  KJ_DISALLOW_COPY(Supervisor);

  const ScriptInfo& start();
  // Before the fork: spawns every worker, loads the script and replays its config keys in
  // each. Throws ScriptFailed (already reported) when the script fails in any of them.

  void forEachWorker(const std::function<void(WorkerLink&)>& call);
  // Process-wide callbacks that every worker must see (config_complete, get_ready, cleanup):
  // before the fork through the config-phase links, after it to every live worker (a dead one
  // is not replaced for this).

  WorkerLink& link();
  // Before the fork: the first worker's config-phase link, for questions any worker can
  // answer (dump_plugin).

  std::shared_ptr<WorkerInstance> firstInstance();
  // After the fork: the first slot's worker, replaced first if it has died.

  std::shared_ptr<WorkerInstance> instance();
  // After the fork: the worker for a new connection (next slot in turn), replaced first if it
  // has died. Throws (already reported) when no worker can be had.

  void endConfigPhase();
  // After get_ready: the config-phase connections (and their event loop) must not outlive the
  // fork, so they are closed here; the workers keep running.

  void startServing();
  // In after_fork: starts each worker's RPC thread on its serving connection and tells it.

  void setThreadModel(int model) { threadModel_ = model; }
  // What nbdkit was told; a replacement worker must agree.

  pid_t workerPid();

private:
  struct Slot {
    // Before the fork.
    std::unique_ptr<WorkerProcess> firstProcess;
    kj::AutoCloseFd firstServingSocket;
    std::unique_ptr<ConfigPhaseLink> configLink;
    // After the fork (guarded by mutex_).
    std::shared_ptr<WorkerInstance> current;
  };

  std::shared_ptr<WorkerInstance> instanceOf(Slot& slot);
  // With mutex_ held.
  std::shared_ptr<WorkerInstance> replaceWorker(Slot& slot);
  std::shared_ptr<WorkerInstance> startConfiguredWorker(const char* what);
  // A new worker taken through the whole replay, from load to after_fork. Throws (reported).
  void reload(const std::string& reason);
  // A new generation of workers with the script as it is now; new connections go to it, the
  // old workers serve their connections until they close. On failure nothing changes.
  std::unique_ptr<WorkerProcess> spawn(bool withConfigSocket, const char* what);
  // A new worker process (debug-wait= says so on stderr).
  void configure(WorkerLink& link);
  // load + config keys, in order.
  void finishConfiguring(ServingLink& link, WorkerProcess& process);
  // after_fork for a worker whose RPC thread has just started.
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
  std::atomic<size_t> nextSlot_ = 0;
  std::deque<std::chrono::steady_clock::time_point> recentDeaths_;
  // Of all slots: a script that kills its workers does so in every slot.
  std::vector<std::weak_ptr<WorkerInstance>> instances_;
  // Every worker still serving a connection, replaced ones included.
  std::unique_ptr<ShutdownWatch> shutdownWatch_;
  std::unique_ptr<ReloadWatch> reloadWatch_;
};

}  // namespace pyworker
