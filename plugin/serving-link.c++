#include "serving-link.h"

#include <kj/debug.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

namespace pyworker {

ServingLink::ServingLink(kj::AutoCloseFd socket)
    : thread_([this, fd = socket.release()]() mutable { loop(kj::AutoCloseFd(fd)); }) {
  auto lock = state_.lockExclusive();
  lock.wait([](const LoopState& s) { return s.executor != nullptr || s.finished; });
  KJ_REQUIRE(lock->executor != nullptr, "pyworker: the RPC thread failed to start");
}

ServingLink::~ServingLink() noexcept {
  {
    auto lock = state_.lockExclusive();
    if (lock->stop) lock->stop->fulfill();
  }
  thread_.join();
}

void ServingLink::loop(kj::AutoCloseFd socket) {
  try {
    auto io = kj::setupAsyncIo();
    RpcConnection connection(*io.lowLevelProvider, kj::mv(socket));
    auto stop = kj::newPromiseAndCrossThreadFulfiller<void>();
    {
      auto lock = state_.lockExclusive();
      lock->executor = &kj::getCurrentThreadExecutor();
      lock->connection = &connection;
      lock->stop = kj::mv(stop.fulfiller);
    }
    stop.promise.wait(io.waitScope);
    auto lock = state_.lockExclusive();
    lock->executor = nullptr;
    lock->connection = nullptr;
    lock->finished = true;
  } catch (const kj::Exception& e) {
    nbdkit_error("pyworker: RPC thread: %s", e.getDescription().cStr());
    state_.lockExclusive()->finished = true;
  }
}

void ServingLink::run(Call call) {
  const kj::Executor* executor;
  RpcConnection* connection;
  {
    auto lock = state_.lockShared();
    KJ_REQUIRE(lock->executor != nullptr, "pyworker: the RPC thread has stopped");
    executor = lock->executor;
    connection = lock->connection;
  }
  executor->executeSync([&]() { return call(connection->worker()); });
}

rpc::Host::Client ServingLink::host() {
  auto lock = state_.lockShared();
  KJ_REQUIRE(lock->connection != nullptr, "pyworker: the RPC thread has stopped");
  return lock->connection->host();
}

}  // namespace pyworker
