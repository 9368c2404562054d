#pragma once
// Owns the workers and the links to them through nbdkit's lifecycle: the first worker is
// spawned and configured on the main thread before the fork and served from an RPC thread
// after it; when a worker dies, the next connection gets a fresh one, configured by replaying
// exactly what nbdkit gave.

#include <kj/common.h>

#include <chrono>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "config-phase-link.h"
#include "serving-link.h"
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
  bool isBusy() const { return link_.isBusy(); }
  WorkerProcess& process() { return *process_; }

private:
  std::unique_ptr<WorkerProcess> process_;
  ServingLink link_;
};

class Supervisor {
public:
  explicit Supervisor(WorkerSetup setup);
  ~Supervisor() noexcept;
  KJ_DISALLOW_COPY(Supervisor);

  const ScriptInfo& start();
  // Before the fork: spawns the worker, loads the script and replays its config keys.
  // Throws ScriptFailed (already reported) when the script fails.

  WorkerLink& link();
  // Before the fork, the config-phase link; after it, the current worker's (see instance()).

  std::shared_ptr<WorkerInstance> instance();
  // After the fork: the worker for a new connection, replaced first if it has died.
  // Throws (already reported) when no worker can be had.

  void endConfigPhase();
  // After get_ready: the config-phase connection (and its event loop) must not outlive the
  // fork, so it is closed here; the worker keeps running.

  void startServing();
  // In after_fork: starts the RPC thread on the serving connection and tells the worker.

  void setThreadModel(int model) { threadModel_ = model; }
  // What nbdkit was told; a replacement worker must agree.

  pid_t workerPid();

  std::shared_ptr<WorkerInstance> healthyInstance();
  // The current worker if it is alive, without replacing it (for cleanup at shutdown).

private:
  std::shared_ptr<WorkerInstance> replaceWorker();
  bool anyWorkerBusy();
  void killAllWorkers();
  // Shutdown took longer than the grace period: callbacks that never return keep nbdkit from
  // exiting, and only killing their workers fails them.
  std::unique_ptr<WorkerProcess> spawn(bool withConfigSocket, const char* what);
  // A new worker process, stopped for a debugger if debug-wait= says so.
  void configure(WorkerLink& link);
  // load + config keys, in order.

  WorkerSetup setup_;
  ScriptInfo info_;
  int threadModel_ = -1;

  // Before the fork.
  std::unique_ptr<WorkerProcess> firstProcess_;
  kj::AutoCloseFd firstServingSocket_;
  std::unique_ptr<ConfigPhaseLink> configLink_;

  // After the fork.
  std::mutex mutex_;
  std::shared_ptr<WorkerInstance> current_;
  std::vector<std::weak_ptr<WorkerInstance>> instances_;
  // Every worker still serving a connection, replaced ones included.
  std::unique_ptr<ShutdownWatch> shutdownWatch_;
  std::deque<std::chrono::steady_clock::time_point> recentDeaths_;
};

}  // namespace pyworker
