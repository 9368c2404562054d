#pragma once
// How nbdkit's threads reach the worker's RPC: a link runs a function on the thread that owns
// the RPC connection and blocks until the promise it returns settles. Capnp objects (clients,
// requests, responses) are touched only inside that function; results are copied out there.

#include <kj/async.h>
#include <kj/function.h>

#include "pyworker.capnp.h"

namespace pyworker {

class WorkerLink {
public:
  using Call = kj::Function<kj::Promise<void>(rpc::Worker::Client& worker)>;

  virtual ~WorkerLink() noexcept = default;

  virtual void run(Call call) = 0;
  // Throws kj::Exception if the call failed at the RPC level (the worker died or broke the
  // protocol); a script's own failure is data in the reply.

  virtual rpc::Host::Client host() = 0;
  // Only inside run(): this connection's Host, to hand to the worker.
};

}  // namespace pyworker
