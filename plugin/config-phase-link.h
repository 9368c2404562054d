#pragma once
// The link used before nbdkit forks into the background: a kj event loop on the calling thread
// (nbdkit's main thread), driven synchronously during each call. No thread may exist before
// after_fork, and the loop dies with the config-phase connections after get_ready.

#include <kj/async-io.h>

#include <string>

#include "rpc-connection.h"
#include "worker-link.h"
#include "worker-process.h"

namespace pyworker {

class ConfigPhaseLink final : public WorkerLink {
public:
  ConfigPhaseLink(kj::AsyncIoContext& io, kj::AutoCloseFd socket, WorkerProcess& process);
  // `io` is the main thread's one event loop (a thread may have only one), shared by every
  // worker's config-phase link and outliving them. Also pumps the worker's output whenever
  // the loop runs. `process` outlives the link.
  ~ConfigPhaseLink() noexcept override = default;

  void run(Call call) override;
  // Throws WorkerLost when the worker is gone.
  rpc::Host::Client host() override { return connection_.host(); }

private:
  kj::AsyncIoContext& io_;
  WorkerProcess& process_;
  RpcConnection connection_;
  kj::Promise<void> outputPump_;
};

}  // namespace pyworker
