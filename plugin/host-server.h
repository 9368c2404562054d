#pragma once
// The plugin's side of what the worker may ask of nbdkit (nbdkit.debug(), nbdkit.shutdown(),
// errors with no request to fail). Runs on whichever thread drives the RPC loop; every nbdkit
// function it calls is safe from any thread.

#include "pyworker.capnp.h"

namespace pyworker {

class HostServer final : public rpc::Host::Server {
protected:
  kj::Promise<void> debug(DebugContext context) override;
  kj::Promise<void> error(ErrorContext context) override;
  kj::Promise<void> shutdown(ShutdownContext context) override;
};

}  // namespace pyworker
