#include "call-context.h"

namespace pyworker {

namespace {
thread_local CallState* threadCall = nullptr;
}

ConnectionContext ConnectionContext::from(rpc::ConnectionContext::Reader context) {
  ConnectionContext info;
  auto name = context.getExportName();
  info.exportName.assign(reinterpret_cast<const char*>(name.begin()), name.size());
  info.hasExportName = context.getHasExportName();
  info.isTls = context.getIsTls();
  auto peer = context.getPeerAddress();
  info.peerAddress.assign(reinterpret_cast<const char*>(peer.begin()), peer.size());
  info.peerPid = context.getPeerPid();
  info.peerUid = context.getPeerUid();
  info.peerGid = context.getPeerGid();
  return info;
}

CallScope::CallScope(const ConnectionContext* connection): saved(threadCall) {
  current.connection = connection;
  threadCall = &current;
}

CallScope::~CallScope() { threadCall = saved; }

CallState* currentCall() { return threadCall; }

}  // namespace pyworker
