#pragma once
// What only nbdkit's connection thread knows (export name, TLS, the peer), captured there and
// shipped with the calls that need it, so that the script's nbdkit.export_name(), is_tls() and
// peer_*() answer as in-process.

#include <cstdint>
#include <string>

#include "pyworker.capnp.h"

namespace pyworker {

struct ConnectionContext {
  bool hasExportName = false;
  std::string exportName;
  bool isTls = false;
  std::string peerAddress;
  int64_t peerPid = -1, peerUid = -1, peerGid = -1;

  static ConnectionContext capture(bool withExportName, bool withTls, bool withPeer);
  // On nbdkit's connection thread. The export name and TLS are not known before the client
  // has chosen an export; there is no peer under -s over pipes.

  void fill(rpc::ConnectionContext::Builder context) const;
};

}  // namespace pyworker
