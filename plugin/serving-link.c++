#include "serving-link.h"

#include "guard.h"
#include "host-server.h"
#include "output-pump.h"
#include "reply-checks.h"
#include "rpc-limits.h"

#include <capnp/serialize.h>

#include <kj/async-unix.h>
#include <kj/debug.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

namespace pyworker {

namespace {

thread_local pid_t lastCallWorker = -1;

constexpr auto REPLY_SPIN = std::chrono::microseconds(50);
// How long an nbdkit thread polls for its lane call's reply before it sleeps (lane-stream.c++
// says why): a 4 KiB request's whole round trip fits in it.

constexpr auto LANE_CLOSED_DEATH_WAIT = 200 * kj::MILLISECONDS;
// How long a lane's end may come before its worker's exit and still count as that death.

}  // namespace

pid_t workerOfLastCall() { return lastCallWorker; }

ServingLink::ServingLink(kj::AutoCloseFd socket, WorkerProcess& process)
    : process_(process),
      lanes_(process.laneOffers()),
      thread_([this, fd = socket.release()]() mutable { loop(kj::AutoCloseFd(fd)); }) {
  auto lock = state_.lockExclusive();
  lock.wait([](const LoopState& s) { return s.executor != nullptr || s.finished; });
  KJ_REQUIRE(lock->executor != nullptr, "pyworker: the RPC thread failed to start");
}

ServingLink::~ServingLink() noexcept { stop(); }

void ServingLink::stop() {
  {
    auto lock = state_.lockExclusive();
    if (lock->stop && !lock->stopping) lock->stop->fulfill();
    lock->stopping = true;
  }
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

void ServingLink::loop(kj::AutoCloseFd socket) {
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
                              .then([this]() { broken_ = true; },
                                    [this](kj::Exception&&) { broken_ = true; })
                              .eagerlyEvaluate(nullptr);
      {
        auto lock = state_.lockExclusive();
        lock->executor = &kj::getCurrentThreadExecutor();
        lock->timer = &io.provider->getTimer();
        lock->connection = &connection;
        lock->stop = kj::mv(stop.fulfiller);
      }
      stop.promise.wait(io.waitScope);
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

kj::Promise<void> ServingLink::watchProcess(kj::UnixEventPort& eventPort) {
  auto observer = kj::heap<kj::UnixEventPort::FdObserver>(
      eventPort, process_.pidfd(), kj::UnixEventPort::FdObserver::OBSERVE_READ);
  auto readable = observer->whenBecomesReadable();
  return readable.then([this]() {
    broken_ = true;
    nbdkit_error("pyworker: worker process %d %s", static_cast<int>(process_.pid()),
                 process_.describeExit().c_str());
  }).attach(kj::mv(observer));
}

void ServingLink::run(Call call) {
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
  lastCallWorker = process_.pid();
  callsStarted_++;
  KJ_DEFER(callsFinished_++);
  int64_t timeout = timeoutMilliseconds_.load();
  if (timeout == 0) {
    executor->executeSync([&]() { return call(connection->worker()); });
    return;
  }
  bool timedOut = false;
  try {
    executor->executeSync([&]() {
      auto limit = timer->afterDelay(timeout * kj::MILLISECONDS).then([&]() {
        // A hung script (or a worker stopped in a debugger) past timeout=: kill it, so that
        // every request waiting on it fails now and the next connection gets a new worker.
        timedOut = true;
        broken_ = true;
        process_.kill();
        KJ_FAIL_REQUIRE("timed out");
      });
      return call(connection->worker()).exclusiveJoin(kj::mv(limit));
    });
  } catch (const kj::Exception&) {
    if (timedOut) throw CallTimedOut{timeout / 1000.0, static_cast<int>(process_.pid())};
    throw;
  }
}

void ServingLink::runLaneCall(kj::FunctionParam<void(rpc::LaneCall::Builder)> build,
                              kj::FunctionParam<void(rpc::LaneReply::Reader)> read) {
  lastCallWorker = process_.pid();
  callsStarted_++;
  KJ_DEFER(callsFinished_++);
  int64_t timeout = timeoutMilliseconds_.load();
  std::optional<std::chrono::steady_clock::time_point> deadline;
  if (timeout != 0) {
    deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout);
  }

  auto lane = lanes_.acquire();
  try {
    {
      capnp::MallocMessageBuilder message(lane->scratch);
      build(message.initRoot<rpc::LaneCall>());
      lane->stream.write(message);
    }
    auto words = lane->stream.read(deadline, REPLY_SPIN);
    try {
      capnp::FlatArrayMessageReader message(words, rpcReaderOptions());
      auto reply = message.getRoot<rpc::LaneReply>();
      for (auto call : reply.getHostCalls()) replayHostCall(call, process_.identity());
      read(reply);
    } catch (const kj::Exception& e) {
      throw LaneError(LaneError::MALFORMED, e.getDescription().cStr());
    }
  } catch (const LaneError& e) {
    lane.discard();  // halfway through a call: of no further use
    switch (e.kind) {
    case LaneError::CLOSED:
      // A dying process's sockets close a moment before its pidfd says it has ended.
      if (process_.hasExited(LANE_CLOSED_DEATH_WAIT)) {
        broken_ = true;
        kj::throwFatalException(KJ_EXCEPTION(DISCONNECTED, "the worker's lane closed", e.what()));
      }
      reject();  // alive, but it hung up on a call: no correct worker does that
      throw BadReply(BadReply::WORKER, "invalid reply from the worker: it closed a lane "
                                       "without answering the call");
    case LaneError::TIMED_OUT:
      // As run(): kill it, so that every request waiting on it fails now and the next
      // connection gets a new worker.
      broken_ = true;
      process_.kill();
      throw CallTimedOut{timeout / 1000.0, static_cast<int>(process_.pid())};
    case LaneError::MALFORMED:
      reject();
      throw BadReply(BadReply::WORKER,
                     std::string("invalid reply from the worker: malformed lane message: ") +
                         e.what());
    }
    throw;
  }
}

void ServingLink::reject() {
  if (broken_.exchange(true)) return;
  nbdkit_error("pyworker: worker process %d sent an invalid reply: killing it; new "
               "connections get a new worker", static_cast<int>(process_.pid()));
  process_.kill();
}

void ServingLink::armTimeout(std::optional<std::chrono::milliseconds> timeout) {
  timeoutMilliseconds_ = timeout ? std::max<int64_t>(timeout->count(), 1) : 0;
}

rpc::Host::Client ServingLink::host() {
  auto lock = state_.lockShared();
  KJ_REQUIRE(lock->connection != nullptr, "pyworker: the RPC thread has stopped");
  return lock->connection->host();
}

}  // namespace pyworker
