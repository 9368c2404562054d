#pragma once
// The link used before nbdkit forks into the background: a kj event loop on the calling thread
// (nbdkit's main thread), driven synchronously during each call. No thread may exist before
// after_fork, and this loop dies with the config-phase connection after get_ready.

#include <kj/async-io.h>

#include "rpc-connection.h"
#include "worker-link.h"

namespace pyworker {

class ConfigPhaseLink final : public WorkerLink {
public:
  ConfigPhaseLink(kj::AutoCloseFd socket, int outputFd);
  // Also pumps the worker's output (outputFd stays the caller's) whenever the loop runs.
  ~ConfigPhaseLink() noexcept override = default;

  void run(Call call) override;
  rpc::Host::Client host() override { return connection_.host(); }

private:
  kj::AsyncIoContext io_;
  RpcConnection connection_;
  kj::Promise<void> outputPump_;
};

}  // namespace pyworker
