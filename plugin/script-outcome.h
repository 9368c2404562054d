#pragma once
// A script callback's outcome (rpc::Status), copied off the RPC thread and applied to nbdkit on
// the connection's own thread, where nbdkit_set_error() and nbdkit_disconnect() belong.

#include <string>
#include <vector>

#include "pyworker.capnp.h"

namespace pyworker {

bool disconnectClient(bool force);
// nbdkit_disconnect() on the calling connection thread, where nbdkit has it (1.34 and later);
// returns false on older nbdkit (1.32 has none), where a connection cannot be ended by a
// plugin.

struct ScriptOutcome {
  int error = 0;
  std::string message;
  rpc::Disconnect disconnect = rpc::Disconnect::NONE;
  std::vector<std::string> errors;  // rpc::Status.errors: logged first, success or not

  static ScriptOutcome from(rpc::Status::Reader status);
  // Only inside a WorkerLink call. Untrusted: an errno outside 1..4095 becomes EIO.

  bool report() const;
  // On nbdkit's thread: logs and sets the error of a failure, passes on a disconnect request.
  // Returns whether the callback succeeded.
};

}  // namespace pyworker
