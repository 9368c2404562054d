#pragma once
// The one error for "this worker can no longer answer", whichever path found out: an RPC call
// that came back DISCONNECTED, a lane whose worker hung up by dying, a lane that could not be
// offered, a call on a worker already known to be gone. It names the worker, so that a
// message blames the one that was asked, and says why; what to do about it (fail the request,
// end the client's connection) is the caller's decision, not the logging code's.

#include <sys/types.h>

#include <string>

namespace pyworker {

struct WorkerLost {
  pid_t pid;
  std::string why;  // "killed by SIGSEGV", "killed: no reply within timeout=", ...
  bool whileAnswering = true;
  // False when the worker was known to be gone before the call was sent.
  bool killedFromOutside = false;
  // SIGKILL that pyworker did not send (an operator, the OOM killer): no request of its own
  // brought that death about.
};

}  // namespace pyworker
