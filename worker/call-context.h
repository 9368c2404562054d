// Per-call state of the thread running a script callback: which connection it belongs to, the
// errno given to nbdkit.set_error() and a nbdkit.disconnect() request. nbdkit keeps the same
// things thread-local on its own connection threads; the `nbdkit` module reads them here.
#pragma once

#include "pyworker.capnp.h"

#include <cstdint>
#include <string>
#include <vector>

namespace pyworker {

struct ConnectionContext {
  // A plain copy of rpc::ConnectionContext, safe to read on any thread.
  std::string exportName;
  bool hasExportName = false;
  bool isTls = false;
  std::string peerAddress;  // struct sockaddr bytes; empty if unknown
  int64_t peerPid = -1;
  int64_t peerUid = -1;
  int64_t peerGid = -1;

  static ConnectionContext from(rpc::ConnectionContext::Reader context);
};

struct CallState {
  const ConnectionContext* connection = nullptr;  // null outside connection-scoped callbacks
  const char* callback = nullptr;              // the script's callback running ("pread")
  int error = 0;                               // nbdkit.set_error()
  rpc::Disconnect disconnect = rpc::Disconnect::NONE;
  std::vector<std::string> errors;  // nbdkit_error() texts for the plugin (rpc::Status.errors)
};

class CallScope {
  // Makes `state` the current call's state on this thread for the scope's lifetime.
public:
  explicit CallScope(const ConnectionContext* connection);
  ~CallScope();
  CallScope(const CallScope&) = delete;
  CallScope& operator=(const CallScope&) = delete;

  CallState& state() { return current; }

private:
  CallState current;
  CallState* saved;
};

CallState* currentCall();
// Null when no callback runs on this thread (script threads, load time).

}  // namespace pyworker
