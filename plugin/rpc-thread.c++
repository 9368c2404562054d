#include "rpc-thread.h"

#include <kj/async-unix.h>
#include <kj/debug.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "output-pump.h"

namespace pyworker {

RpcThread::RpcThread(kj::AutoCloseFd socket, WorkerProcess& process,
                     std::function<void()> onExit)
    : process_(process),
      onExit_(kj::mv(onExit)),
      thread_([this, fd = socket.release()]() mutable { loop(kj::AutoCloseFd(fd)); }) {
  auto lock = state_.lockExclusive();
  lock.wait([](const LoopState& s) { return s.executor != nullptr || s.finished; });
  KJ_REQUIRE(lock->executor != nullptr, "pyworker: the RPC thread failed to start");
}

RpcThread::~RpcThread() noexcept { stop(); }

void RpcThread::stop() {
  {
    auto lock = state_.lockExclusive();
    if (lock->stop && !lock->stopping) lock->stop->fulfill();
    lock->stopping = true;
  }
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

void RpcThread::loop(kj::AutoCloseFd socket) {
  try {
    auto io = kj::setupAsyncIo();
    {
      RpcConnection connection(*io.lowLevelProvider, kj::mv(socket), process_.identity());
      auto stop = kj::newPromiseAndCrossThreadFulfiller<void>();
      auto watch = watchProcess(io.unixEventPort).eagerlyEvaluate(nullptr);
      auto output = pumpOutput(*io.lowLevelProvider, process_.outputFd(),
                               process_.identity() + ": ")
                        .eagerlyEvaluate(nullptr);
      auto disconnected = connection.onDisconnect()
                              .then([this]() { onExit_(); },
                                    [this](kj::Exception&&) { onExit_(); })
                              .eagerlyEvaluate(nullptr);
      {
        auto lock = state_.lockExclusive();
        lock->executor = &kj::getCurrentThreadExecutor();
        lock->timer = &io.provider->getTimer();
        lock->connection = &connection;
        lock->stop = kj::mv(stop.fulfiller);
      }
      stop.promise.wait(io.waitScope);
      handles_.clear();  // before the connection they belong to
      auto lock = state_.lockExclusive();
      lock->executor = nullptr;
      lock->connection = nullptr;
      lock->finished = true;
    }
    // Tearing the connection down queues events of its own (writes of the last messages, the
    // end of the RPC system): run them, or the event loop would be destroyed with events
    // still queued (kj reports that as an error).
    io.waitScope.poll();
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
  try {
    executor->executeSync([&]() {
      auto expiry = timer->afterDelay(limit->count() * kj::MILLISECONDS).then([&]() {
        passed = true;
        KJ_FAIL_REQUIRE("deadline passed");
      });
      return call(connection->worker()).exclusiveJoin(kj::mv(expiry));
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

void RpcThread::keepHandle(uint64_t id, rpc::Handle::Client handle) {
  requireLoopThread();
  handles_.insert_or_assign(id, kj::mv(handle));
}

void RpcThread::releaseHandle(uint64_t id) {
  requireLoopThread();
  handles_.erase(id);
}

}  // namespace pyworker
