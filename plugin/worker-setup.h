#pragma once
// Everything needed to bring up a worker configured exactly as nbdkit configured us, and what
// the first worker said about itself.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace pyworker {

struct WorkerSetup {
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
  bool recoverByReopening = false;
  bool spread = false;
  std::vector<std::string> workerArguments;
  // sandbox= and worker-user= (sandbox-plan.h): given to every worker.
  bool fixedWorkerIdentity = false;
  // worker-user=/worker-group=: the worker keeps that identity when nbdkit -u/-g switches.
  bool pdb = false;
};

struct ScriptInfo {
  int apiVersion = 0;
  std::string pythonVersion;
  int pep384AbiVersion = 0;
};

}  // namespace pyworker
