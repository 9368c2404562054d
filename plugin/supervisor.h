#pragma once
// Owns the worker process and the link to it through nbdkit's lifecycle: spawned and configured
// on the main thread before the fork, served from an RPC thread after it.

#include <kj/common.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "config-phase-link.h"
#include "serving-link.h"
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
};

class Supervisor {
public:
  explicit Supervisor(WorkerSetup setup);
  ~Supervisor() noexcept;
  // Closes the links, then stops and reaps the worker.
  KJ_DISALLOW_COPY(Supervisor);

  const ScriptInfo& start();
  // Before the fork: spawns the worker, loads the script and replays its config keys.
  // Returns false (after nbdkit_error) when the script fails.

  WorkerLink& link();
  // The link for the current phase.

  void endConfigPhase();
  // After get_ready: the config-phase connection (and its event loop) must not outlive the
  // fork, so it is closed here; the worker keeps running.

  void startServing();
  // In after_fork: starts the RPC thread on the serving connection and tells the worker.

  pid_t workerPid() const;

private:
  WorkerSetup setup_;
  ScriptInfo info_;
  std::unique_ptr<WorkerProcess> process_;
  kj::AutoCloseFd servingSocket_;
  // Held from spawn until after_fork hands it to the RPC thread.
  std::unique_ptr<ConfigPhaseLink> configLink_;
  std::unique_ptr<ServingLink> servingLink_;
};

}  // namespace pyworker
