// What the RPC servers share: the script, the threads that run it, the line to the Host, the
// pending close() jobs (cleanup waits for them) and the open handles (lanes find them there).
// Owned by main(), which outlives them.
#pragma once

#include <kj/async.h>

#include <cstddef>
#include <cstdint>

namespace pyworker {

class HandleTable;
class HostLink;
class PythonExecutor;
class Script;

struct SharedData {
  // The data memory shared with the plugin (empty if the plugin gave none): request payloads
  // that do not travel inside the RPC messages.
  uint8_t* base = nullptr;
  size_t size = 0;
};

struct Services {
  Script& script;
  PythonExecutor& executor;
  HostLink& host;
  kj::TaskSet& closes;
  HandleTable& handles;
  SharedData data;
};

}  // namespace pyworker
