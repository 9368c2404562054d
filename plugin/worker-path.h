#pragma once
// Where the worker executable is: an explicit worker=PATH, else beside the plugin (an
// installed layout or a copy), else the build tree's worker/ next to plugin/, else the
// installed libexec path.

#include <functional>
#include <optional>
#include <string>

namespace pyworker {

inline constexpr const char* WORKER_NAME = "nbdkit-pyworker-worker";

std::string resolveWorkerPath(const std::optional<std::string>& override,
                              const std::string& pluginDirectory,
                              const std::string& installedPath,
                              const std::function<bool(const std::string&)>& isExecutable);
// Throws ParameterError naming every place it looked when none is executable.

std::string pluginDirectory();
// The directory of the loaded nbdkit-pyworker-plugin.so (dladdr), "" if unknown.

}  // namespace pyworker
