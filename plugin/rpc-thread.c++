#include "rpc-thread.h"

#include <kj/async-unix.h>
#include <kj/debug.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "output-pump.h"
#include "pdb-leftovers.h"

namespace pyworker {

namespace {

constexpr auto OUTPUT_AFTER_EXIT = 50 * kj::MILLISECONDS;
// Once the worker has exited, what it wrote is in the pipe already: this is plenty to copy it.

}  // namespace

RpcThread::RpcThread(kj::AutoCloseFd socket, WorkerProcess& process, BreakpointPause& pause,
                     std::function<void()> onExit)
    : process_(process),
      pause_(pause),
      onExit_(kj::mv(onExit)),
      thread_([this, fd = socket.release()]() mutable { loop(kj::AutoCloseFd(fd)); }) {
  auto lock = state_.lockExclusive();
  lock.wait([](const LoopState& s) { return s.executor != nullptr || s.finished; });
  KJ_REQUIRE(lock->executor != nullptr, "pyworker: the RPC thread failed to start");
}

RpcThread::~RpcThread() noexcept { stop(0 * kj::SECONDS); }

void RpcThread::stop(kj::Duration drainLimit) {
  {
    auto lock = state_.lockExclusive();
    if (lock->stop && !lock->stopping) {
      lock->drainLimit = drainLimit;
      lock->stop->fulfill();
    }
    lock->stopping = true;
  }
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

void RpcThread::loop(kj::AutoCloseFd socket) {
  try {
    auto io = kj::setupAsyncIo();
    auto output = pumpOutput(*io.lowLevelProvider, process_.outputFd(),
                             process_.identity() + ": ")
                      .eagerlyEvaluate(nullptr);
    {
      auto connection = kj::heap<RpcConnection>(*io.lowLevelProvider, kj::mv(socket),
                                                process_.identity(),
                                                static_cast<int>(process_.pid()), &pause_);
      auto stop = kj::newPromiseAndCrossThreadFulfiller<void>();
      auto watch = watchProcess(io.unixEventPort).eagerlyEvaluate(nullptr);
      auto disconnected = connection->onDisconnect()
                              .then([this]() { onExit_(); },
                                    [this](kj::Exception&&) { onExit_(); })
                              .eagerlyEvaluate(nullptr);
      {
        auto lock = state_.lockExclusive();
        lock->executor = &kj::getCurrentThreadExecutor();
        lock->timer = &io.provider->getTimer();
        lock->connection = connection.get();
        lock->stop = kj::mv(stop.fulfiller);
      }
      stop.promise.wait(io.waitScope);
      {
        auto lock = state_.lockExclusive();
        lock->executor = nullptr;
        lock->connection = nullptr;
      }
      // A deliberate end: neither the hang-up below nor the exit it causes is a death.
      disconnected = kj::READY_NOW;
      watch = kj::READY_NOW;
      connection = nullptr;
      process_.tellToExit();
      // Tearing the connection down queues events of its own (writes of the last messages, the
      // end of the RPC system): run them, or the event loop would be destroyed with events
      // still queued (kj reports that as an error).
      io.waitScope.poll();
    }
    // What the worker prints while it exits (cleanup's output already came; atexit handlers,
    // a traceback) reaches the log as in-process: the output is copied until the pipe ends,
    // or until shortly after the worker has exited (a daemon it started may hold the pipe),
    // or the drain limit has passed.
    auto drainLimit = state_.lockShared()->drainLimit;
    auto exited = kj::heap<kj::UnixEventPort::FdObserver>(
        io.unixEventPort, process_.pidfd(), kj::UnixEventPort::FdObserver::OBSERVE_READ);
    auto& timer = io.provider->getTimer();
    auto afterExit = exited->whenBecomesReadable()
                         .then([&timer]() { return timer.afterDelay(OUTPUT_AFTER_EXIT); })
                         .attach(kj::mv(exited));
    output.exclusiveJoin(kj::mv(afterExit))
        .exclusiveJoin(timer.afterDelay(drainLimit))
        .wait(io.waitScope);
    state_.lockExclusive()->finished = true;
  } catch (const kj::Exception& e) {
    nbdkit_error("pyworker: RPC thread: %s", e.getDescription().cStr());
    state_.lockExclusive()->finished = true;
  }
}

kj::Promise<void> RpcThread::watchProcess(kj::UnixEventPort& eventPort) {
  auto observer = kj::heap<kj::UnixEventPort::FdObserver>(
      eventPort, process_.pidfd(), kj::UnixEventPort::FdObserver::OBSERVE_READ);
  auto readable = observer->whenBecomesReadable();
  return readable.then([this]() {
    nbdkit_error("pyworker: worker process %d %s", static_cast<int>(process_.pid()),
                 process_.describeExit().c_str());
    if (process_.pdb()) removePdbLeftovers(process_.pid());  // a dead worker could not
    onExit_();
  }).attach(kj::mv(observer));
}

void RpcThread::run(Call& call, Deadline limit) {
  const kj::Executor* executor;
  RpcConnection* connection;
  kj::Timer* timer;
  {
    auto lock = state_.lockShared();
    KJ_REQUIRE(lock->executor != nullptr, "pyworker: the RPC thread has stopped");
    executor = lock->executor;
    connection = lock->connection;
    timer = lock->timer;
  }
  if (!limit) {
    executor->executeSync([&]() { return call(connection->worker()); });
    return;
  }
  bool passed = false;
  // Past the limit, the call has timed out unless a breakpoint of this worker waits or has
  // just resumed: then the expiry is put off to the deadline the pause names. Used on the
  // loop thread, while this one waits in executeSync() (so this frame outlives it).
  kj::Function<kj::Promise<void>(kj::Duration)> expiry = [&](kj::Duration delay) {
    return timer->afterDelay(delay).then([&]() -> kj::Promise<void> {
      if (auto later = pause_.laterDeadline(*limit)) {
        auto left = std::chrono::ceil<std::chrono::milliseconds>(
            *later - std::chrono::steady_clock::now());
        return expiry(std::max<int64_t>(left.count(), 1) * kj::MILLISECONDS);
      }
      passed = true;
      KJ_FAIL_REQUIRE("deadline passed");
    });
  };
  try {
    executor->executeSync([&]() {
      return call(connection->worker()).exclusiveJoin(expiry(limit->count() * kj::MILLISECONDS));
    });
  } catch (const kj::Exception&) {
    if (passed) throw DeadlinePassed{};
    throw;
  }
}

void RpcThread::requireLoopThread() const {
  KJ_REQUIRE(std::this_thread::get_id() == thread_.get_id(),
             "pyworker: a worker's capabilities belong to its RPC thread");
}

rpc::Host::Client RpcThread::host() {
  requireLoopThread();
  auto lock = state_.lockShared();
  KJ_REQUIRE(lock->connection != nullptr, "pyworker: the RPC thread has stopped");
  return lock->connection->host();
}

}  // namespace pyworker
