// What the RPC servers share: the script, the threads that run it, the line to the Host, the
// pending close() jobs (cleanup waits for them) and the open handles (lanes find them there).
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
  kj::TaskSet& closes;
  HandleTable& handles;
};

}  // namespace pyworker
