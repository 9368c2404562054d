#include "host-server.h"

#include <string>

#include <unistd.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

namespace pyworker {

namespace {

// nbdkit's log takes C strings; a NUL inside the text would cut it short.
std::string printable(capnp::Text::Reader text) {
  std::string s(text.cStr(), text.size());
  for (auto& c : s) {
    if (c == '\0') c = ' ';
  }
  return s;
}

}  // namespace

void replayHostCall(rpc::HostCall::Reader call, const std::string& identity) {
  switch (call.which()) {
  case rpc::HostCall::DEBUG:
    nbdkit_debug("%s: %s", identity.c_str(), printable(call.getDebug()).c_str());
    break;
  case rpc::HostCall::ERROR:
    nbdkit_error("%s", printable(call.getError()).c_str());
    break;
  case rpc::HostCall::SHUTDOWN:
    nbdkit_shutdown();
    break;
  default:
    break;  // a kind this plugin does not know: nothing to do
  }
}

kj::Promise<void> HostServer::debug(DebugContext context) {
  nbdkit_debug("%s: %s", identity_.c_str(),
               printable(context.getParams().getMessage()).c_str());
  return kj::READY_NOW;
}

kj::Promise<void> HostServer::error(ErrorContext context) {
  nbdkit_error("%s", printable(context.getParams().getMessage()).c_str());
  return kj::READY_NOW;
}

kj::Promise<void> HostServer::shutdown(ShutdownContext) {
  nbdkit_shutdown();
  return kj::READY_NOW;
}

kj::Promise<void> HostServer::breakpointWaits(BreakpointWaitsContext context) {
  if (pause_ == nullptr || !pause_->waits()) return kj::READY_NOW;  // pdb=off: not asked for
  auto params = context.getParams();
  // At error level, as the other lines an operator must see (without -v): where, and how to
  // attach. nbdkit's pid is this process's (the serving one, after a daemon's fork).
  nbdkit_error("pyworker: worker process %d waits at a breakpoint %s (%s:%u): "
               "tools/pyworker-debug pdb %d",
               pid_, printable(params.getWhere()).c_str(), printable(params.getFile()).c_str(),
               params.getLine(), static_cast<int>(getpid()));
  return kj::READY_NOW;
}

kj::Promise<void> HostServer::breakpointResumed(BreakpointResumedContext) {
  if (pause_ != nullptr) pause_->resumed();
  return kj::READY_NOW;
}

}  // namespace pyworker
