#pragma once
// The plugin's process-wide state: the parameters nbdkit gave and the supervisor of the worker.

#include <optional>

#include "parameters.h"
#include "supervisor.h"
#include "unmanaged.h"

namespace pyworker {

std::optional<uint64_t> parseSize(const std::string& text);
// nbdkit_parse_size(), for Parameters.

class PluginState {
public:
  PluginState();

  bool stdinIsSocket() const { return stdinIsSocket_; }
  // What nbdkit's stdin was when the plugin was configured: under -s, the connection (nbdkit
  // moves it away from fd 0 before it serves).

  Parameters& parameters() { return parameters_; }

  Supervisor& supervisor();
  // Starts the worker on first use (config_complete, or --dump-plugin which has none).

  bool started() const { return supervisor_.has_value(); }
  const ScriptInfo& scriptInfo() const { return info_; }

private:
  Parameters parameters_;
  std::optional<Supervisor> supervisor_;
  ScriptInfo info_;
  bool stdinIsSocket_ = false;
  bool startFailed_ = false;
  // The first failure was reported; later callbacks (nbdkit still asks for thread_model after
  // a failed --dump-plugin) must not spawn and fail again.
};

PluginState& state();
// Created on first use; destroyed only by destroyState() (from nbdkit's unload).
void destroyState();

}  // namespace pyworker
