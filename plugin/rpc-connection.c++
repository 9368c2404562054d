#include "rpc-connection.h"

#include "host-server.h"

namespace pyworker {

RpcConnection::RpcConnection(kj::LowLevelAsyncIoProvider& lowLevel, kj::AutoCloseFd socket,
                             std::string identity, int pid, BreakpointPause* pause)
    : stream_(lowLevel.wrapSocketFd(kj::mv(socket),
                                    kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP)),
      messages_(*stream_, identity),
      network_(messages_, capnp::rpc::twoparty::Side::CLIENT, rpcReaderOptions()),
      host_(kj::heap<HostServer>(kj::mv(identity), pid, pause)),
      rpcSystem_(capnp::makeRpcServer(network_, host_)),
      worker_(nullptr) {
  capnp::word scratch[4];
  memset(scratch, 0, sizeof(scratch));
  capnp::MallocMessageBuilder message(scratch);
  auto vatId = message.getRoot<capnp::rpc::twoparty::VatId>();
  vatId.setSide(capnp::rpc::twoparty::Side::SERVER);
  worker_ = rpcSystem_.bootstrap(vatId).castAs<rpc::Worker>();
  rpcSystem_.setFlowLimit(HOST_CALL_FLOW_LIMIT_WORDS);
}

}  // namespace pyworker
