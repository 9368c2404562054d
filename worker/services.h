// What the RPC servers share: the script, the threads that run it, the line to the Host, and
// the pending close() jobs (cleanup waits for them). Owned by main(), which outlives them.
#pragma once

#include <kj/async.h>

namespace pyworker {

class HostLink;
class PythonExecutor;
class Script;

struct Services {
  Script& script;
  PythonExecutor& executor;
  HostLink& host;
  kj::TaskSet& closes;
};

}  // namespace pyworker
