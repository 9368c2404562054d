#include "worker-path.h"

#include <dlfcn.h>
#include <limits.h>
#include <stdlib.h>

#include <vector>

#include "parameters.h"

namespace pyworker {

std::string resolveWorkerPath(const std::optional<std::string>& override,
                              const std::string& pluginDirectory,
                              const std::string& installedPath,
                              const std::function<bool(const std::string&)>& isExecutable) {
  if (override) {
    if (!isExecutable(*override)) {
      throw ParameterError("worker=" + *override + ": not an executable file");
    }
    return *override;
  }
  std::vector<std::string> candidates;
  if (!pluginDirectory.empty()) {
    candidates.push_back(pluginDirectory + "/" + WORKER_NAME);
    candidates.push_back(pluginDirectory + "/../worker/" + WORKER_NAME);
  }
  candidates.push_back(installedPath);
  std::string tried;
  for (auto& candidate : candidates) {
    if (isExecutable(candidate)) return candidate;
    tried += (tried.empty() ? "" : ", ") + candidate;
  }
  throw ParameterError("cannot find " + std::string(WORKER_NAME) + " (looked at " + tried +
                       "); use worker=PATH");
}

std::string pluginDirectory() {
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&pluginDirectory), &info) == 0 || !info.dli_fname) {
    return "";
  }
  char resolved[PATH_MAX];
  if (!realpath(info.dli_fname, resolved)) return "";
  std::string path(resolved);
  auto slash = path.rfind('/');
  return slash == std::string::npos ? "" : path.substr(0, slash);
}

}  // namespace pyworker
