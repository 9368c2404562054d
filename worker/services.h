// What the RPC server shares with the rest of the worker: the script, the threads that run it,
// the line to the Host and the open handles (lanes open, find and close them there; cleanup
// closes what is left).
// Owned by main(), which outlives them.
#pragma once

#include <kj/async.h>

namespace pyworker {

class HandleTable;
class HostLink;
class PythonExecutor;
class Script;

struct Services {
  Script& script;
  PythonExecutor& executor;
  HostLink& host;
  HandleTable& handles;
};

}  // namespace pyworker
