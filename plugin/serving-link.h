#pragma once
// The link used once nbdkit serves (from after_fork on): one thread owns a kj event loop and
// the RPC connection; nbdkit's connection threads hand it calls with executeSync().

#include <kj/async-io.h>
#include <kj/mutex.h>

#include <thread>

#include "rpc-connection.h"
#include "worker-link.h"

namespace pyworker {

class ServingLink final : public WorkerLink {
public:
  explicit ServingLink(kj::AutoCloseFd socket);
  // Starts the loop thread and returns once it is ready to take calls.
  ~ServingLink() noexcept override;
  // Stops the loop (dropping every capability, which closes the socket) and joins the thread.

  void run(Call call) override;
  rpc::Host::Client host() override;

private:
  struct LoopState {
    // Lives on the loop thread's stack; published for other threads once ready.
    const kj::Executor* executor = nullptr;
    RpcConnection* connection = nullptr;
    kj::Own<kj::CrossThreadPromiseFulfiller<void>> stop;
    bool finished = false;
  };

  void loop(kj::AutoCloseFd socket);

  kj::MutexGuarded<LoopState> state_;
  std::thread thread_;
};

}  // namespace pyworker
