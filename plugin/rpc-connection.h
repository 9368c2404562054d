#pragma once
// One Cap'n Proto two-party connection to a worker over a socket, on the calling thread's kj
// event loop: the plugin serves Host and holds the worker's bootstrap Worker capability.

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <kj/io.h>

#include <string>

#include "bounded-message-stream.h"
#include "breakpoint-pause.h"
#include "pyworker.capnp.h"
#include "rpc-limits.h"

namespace pyworker {

constexpr size_t HOST_CALL_FLOW_LIMIT_WORDS = 1024 * 1024;
// 8 MiB of Host calls unanswered at most, then the plugin reads nothing more from that worker
// until some are answered. The Host methods answer at once today; this keeps it so if one ever
// waits for something.

class RpcConnection {
public:
  RpcConnection(kj::LowLevelAsyncIoProvider& lowLevel, kj::AutoCloseFd socket,
                std::string identity, int pid, BreakpointPause* pause = nullptr);
  // Takes ownership of `socket`. `identity` ("pyworker[PID]") labels the worker's messages.
  // `pause`: the serving worker's breakpoints (host-server.h).
  KJ_DISALLOW_COPY(RpcConnection);

  rpc::Worker::Client& worker() { return worker_; }
  rpc::Host::Client host() { return host_; }

  kj::Promise<void> onDisconnect() { return network_.onDisconnect(); }

private:
  kj::Own<kj::AsyncIoStream> stream_;
  BoundedMessageStream messages_;
  capnp::TwoPartyVatNetwork network_;
  rpc::Host::Client host_;
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpcSystem_;
  rpc::Worker::Client worker_;
};

}  // namespace pyworker
