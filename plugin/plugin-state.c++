#include "plugin-state.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "guard.h"
#include "sandbox-plan.h"
#include "worker-path.h"

#ifndef PYWORKER_INSTALLED_WORKER
#error "the build must define PYWORKER_INSTALLED_WORKER"
#endif

namespace pyworker {

namespace {

Unmanaged<PluginState> globalState;

bool isExecutable(const std::string& path) { return access(path.c_str(), X_OK) == 0; }

std::optional<std::string> absolute(const std::optional<std::string>& path) {
  // Now, before the daemon changes to "/".
  if (!path) return std::nullopt;
  char* resolved = nbdkit_absolute_path(path->c_str());
  if (resolved == nullptr) throw ScriptFailed();
  std::string result = resolved;
  free(resolved);
  return result;
}

}  // namespace

PluginState::PluginState() : parameters_(parseSize) {
  // Created by the first config call: nbdkit has not touched its stdin yet.
  struct stat st;
  stdinIsSocket_ = fstat(0, &st) == 0 && S_ISSOCK(st.st_mode);
}

Supervisor& PluginState::supervisor() {
  if (!supervisor_) {
    if (startFailed_) throw ScriptFailed();
    parameters_.checkComplete();
    WorkerSetup setup{
        resolveWorkerPath(parameters_.workerPath(), pluginDirectory(), PYWORKER_INSTALLED_WORKER,
                          isExecutable),
        parameters_.script(), parameters_.scriptConfig(), parameters_.timeout(),
        parameters_.memoryLimit(), parameters_.maxRestarts(), parameters_.restartWindow(),
        parameters_.debugWait(), parameters_.workers(), parameters_.reloadOnChange(),
        absolute(parameters_.reloadTrigger()), parameters_.recoverByReopening(),
        parameters_.spread(), {}, false, parameters_.pdb()};
    auto sandbox = planSandbox(parameters_, probeKernel());  // may refuse: before any worker
    for (const auto& missing : sandbox.leftOut) {
      // Said without -v: nothing is left unprotected silently.
      fprintf(stderr, "nbdkit: pyworker: warning: sandbox=best-effort: left out %s\n",
              missing.c_str());
    }
    if (parameters_.sandbox() != SandboxMode::OFF) {
      nbdkit_debug("pyworker: sandbox: %s", sandbox.summary.c_str());
    }
    setup.workerArguments = std::move(sandbox.workerArguments);
    const auto& who = parameters_.workerIdentity();
    setup.fixedWorkerIdentity = who.uid.has_value() || who.gid.has_value();
    auto& supervisor = supervisor_.emplace(kj::mv(setup));
    try {
      info_ = supervisor.start();
    } catch (...) {
      // A failed start leaves no worker behind and no half-started supervisor.
      supervisor_.reset();
      startFailed_ = true;
      throw;
    }
  }
  return *supervisor_;
}

std::optional<uint64_t> parseSize(const std::string& text) {
  int64_t size = nbdkit_parse_size(text.c_str());
  if (size < 0) return std::nullopt;
  return static_cast<uint64_t>(size);
}

PluginState& state() {
  if (!globalState) globalState.emplace();
  return *globalState.get();
}

void destroyState() { globalState.reset(); }

}  // namespace pyworker
