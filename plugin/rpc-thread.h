#pragma once
// The thread that owns a serving worker's Cap'n Proto connection once nbdkit serves (from
// after_fork on): its kj event loop runs the RPC connection, pumps the worker's output into
// nbdkit's log and watches the process (its pidfd). nbdkit's threads hand it calls with
// executeSync(). (A connection's own calls, open and close included, travel on lanes instead:
// lane-client.h.)

#include <kj/async-io.h>
#include <kj/mutex.h>

#include <chrono>
#include <functional>
#include <optional>
#include <thread>

#include "breakpoint-pause.h"
#include "pyworker.capnp.h"
#include "rpc-connection.h"
#include "worker-link.h"
#include "worker-process.h"

namespace pyworker {

class RpcThread {
public:
  using Deadline = std::optional<std::chrono::milliseconds>;
  using Call = WorkerLink::Call;

  struct DeadlinePassed {};
  // Thrown by run() when the call took longer than its limit; the call was abandoned (the
  // caller decides what becomes of the worker).

  RpcThread(kj::AutoCloseFd socket, WorkerProcess& process, BreakpointPause& pause,
            std::function<void()> onExit);
  // Starts the loop thread and returns once it is ready to take calls. `process` and `pause`
  // (what the worker says of its breakpoints) must outlive this. `onExit` runs on the loop
  // thread, once, when the process has ended (its pidfd is readable) or the connection has
  // broken.
  ~RpcThread() noexcept;
  KJ_DISALLOW_COPY(RpcThread);

  void stop(kj::Duration drainLimit);
  // Closes the socket (the worker's signal to exit; it closes the handles still open), copies
  // what the worker still prints while it exits into the log (until its output ends, it has
  // exited, or `drainLimit` has passed), and joins the thread. Idempotent; later calls throw.

  void run(Call& call, Deadline limit);
  // Runs `call` on the loop thread and waits until its promise settles. Throws the call's
  // kj::Exception (DISCONNECTED when the worker is gone), or DeadlinePassed: past `limit`,
  // unless the pause names a later deadline (a breakpoint waits: BreakpointPause).

  rpc::Host::Client host();
  // Inside run() only: this connection's Host, to hand to the worker.

private:
  struct LoopState {
    // Lives on the loop thread's stack; published for other threads once ready.
    const kj::Executor* executor = nullptr;
    kj::Timer* timer = nullptr;
    RpcConnection* connection = nullptr;
    kj::Own<kj::CrossThreadPromiseFulfiller<void>> stop;
    bool stopping = false;
    bool finished = false;
    kj::Duration drainLimit = 0 * kj::SECONDS;
  };

  void loop(kj::AutoCloseFd socket);
  kj::Promise<void> watchProcess(kj::UnixEventPort& eventPort);
  void requireLoopThread() const;

  WorkerProcess& process_;
  BreakpointPause& pause_;
  std::function<void()> onExit_;
  kj::MutexGuarded<LoopState> state_;
  std::thread thread_;
};

}  // namespace pyworker
