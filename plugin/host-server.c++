#include "host-server.h"

#include <string>

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

}  // namespace pyworker
