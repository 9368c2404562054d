#pragma once
// The link used once nbdkit serves (from after_fork on): one thread owns a kj event loop and
// the RPC connection; nbdkit's connection threads hand it calls with executeSync(). A
// connection's own callbacks skip that thread: the calling nbdkit thread sends them on a lane.

#include <kj/async-io.h>
#include <kj/mutex.h>

#include <atomic>
#include <chrono>
#include <optional>
#include <thread>

#include "lane-pool.h"
#include "rpc-connection.h"
#include "worker-link.h"
#include "worker-process.h"

namespace pyworker {

pid_t workerOfLastCall();
// The worker process that the calling thread's last ServingLink::run() went to (-1 if none),
// for error messages.

class ServingLink final : public WorkerLink {
public:
  ServingLink(kj::AutoCloseFd socket, WorkerProcess& process);
  // Starts the loop thread and returns once it is ready to take calls. The loop also watches
  // `process` (which must outlive the link) and logs once, with how, when it dies.

  void armTimeout(std::optional<std::chrono::milliseconds> timeout);
  // From now on a call that takes longer kills the worker and throws CallTimedOut. Armed once
  // the worker is configured: start-up may wait for a debugger (debug-wait=).
  ~ServingLink() noexcept override;
  void stop();
  // Stops the loop (dropping every capability, which closes the socket) and joins the thread.
  // Idempotent; later calls fail.

  void run(Call call) override;
  rpc::Host::Client host() override;

  void runLaneCall(kj::FunctionParam<void(rpc::LaneCall::Builder)> build,
                   kj::FunctionParam<void(rpc::LaneReply::Reader)> read);
  // One of a connection's calls on a lane, on the calling thread: `build` fills the call, `read` copies out
  // what it needs from the reply (which lives only during `read`). Fails as run() does
  // (kj::Exception DISCONNECTED when the worker is gone, CallTimedOut past timeout=); a reply
  // that is not a well-formed LaneReply rejects the worker and throws BadReply.

  void reject();
  // The worker sent a reply that no correct worker sends (reply-checks.h): it is killed, so
  // that every later call on this link fails (the connections it serves included) and the
  // next connection gets a new worker. Counts as a death for max-restarts.

  bool isBroken() const { return broken_.load(); }
  void markBroken() { broken_ = true; }
  // A call found the worker gone before the RPC thread noticed: new connections go elsewhere.
  struct Progress {
    uint64_t started = 0;
    uint64_t finished = 0;
  };
  Progress progress() const { return {callsStarted_.load(), callsFinished_.load()}; }
  // Counts of calls, for telling a slow call from a busy link without timing each call.
  // The worker died or the connection failed: every later call fails; start a new worker.

private:
  struct LoopState {
    // Lives on the loop thread's stack; published for other threads once ready.
    const kj::Executor* executor = nullptr;
    kj::Timer* timer = nullptr;
    RpcConnection* connection = nullptr;
    kj::Own<kj::CrossThreadPromiseFulfiller<void>> stop;
    bool stopping = false;
    bool finished = false;
  };

  void loop(kj::AutoCloseFd socket);
  kj::Promise<void> watchProcess(kj::UnixEventPort& eventPort);

  WorkerProcess& process_;
  LanePool lanes_;
  std::atomic<int64_t> timeoutMilliseconds_ = 0;
  // 0: no timeout.
  std::atomic<bool> broken_ = false;
  std::atomic<uint64_t> callsStarted_ = 0;
  std::atomic<uint64_t> callsFinished_ = 0;
  kj::MutexGuarded<LoopState> state_;
  std::thread thread_;
};

}  // namespace pyworker
