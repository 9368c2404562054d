#include "connection-context.h"

#include <sys/socket.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

namespace pyworker {

namespace {

kj::ArrayPtr<const kj::byte> bytes(const std::string& s) {
  return kj::arrayPtr(reinterpret_cast<const kj::byte*>(s.data()), s.size());
}

}  // namespace

ConnectionContext ConnectionContext::capture(bool withExportName, bool withTls,
                                             bool withPeer) {
  ConnectionContext context;
  if (withExportName) {
    if (const char* name = nbdkit_export_name()) {
      context.hasExportName = true;
      context.exportName = name;
    }
  }
  if (withTls) context.isTls = nbdkit_is_tls() == 1;
  if (!withPeer) return context;
  sockaddr_storage address;
  socklen_t length = sizeof(address);
  if (nbdkit_peer_name(reinterpret_cast<sockaddr*>(&address), &length) == 0 &&
      length <= sizeof(address)) {
    context.peerAddress.assign(reinterpret_cast<const char*>(&address), length);
    if (address.ss_family == AF_UNIX) {
      // Credentials exist only for Unix-domain peers; elsewhere nbdkit would log an error.
      context.peerPid = nbdkit_peer_pid();
      context.peerUid = nbdkit_peer_uid();
      context.peerGid = nbdkit_peer_gid();
    }
  }
  return context;
}

void ConnectionContext::fill(rpc::ConnectionContext::Builder context) const {
  context.setHasExportName(hasExportName);
  context.setExportName(bytes(exportName));
  context.setIsTls(isTls);
  context.setPeerAddress(bytes(peerAddress));
  context.setPeerPid(peerPid);
  context.setPeerUid(peerUid);
  context.setPeerGid(peerGid);
}

}  // namespace pyworker
