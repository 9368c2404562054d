#include "worker-fixture.h"

#include <capnp/serialize.h>
#include <kj/debug.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <chrono>
#include <memory>
#include <thread>

#include "lane-offers.h"
#include "lane-stream.h"
#include "nbdkit-module.h"
#include "python-ref.h"
#include "rpc-limits.h"
#include "worker-server.h"

#ifndef FUZZ_SCRIPT
#error "the build must define FUZZ_SCRIPT (the fixture script's path)"
#endif

extern "C" const char* __asan_default_options() {
  // The embedded interpreter keeps its allocations until exit by design: no leak reports for
  // the processes that run it.
  return "detect_leaks=0";
}

namespace pyworker::fuzz {
namespace {

constexpr size_t SHARED_MEMORY_BYTES = 1024 * 1024;
// The data memory shared with the plugin, small: requests may name ranges in it.

class QuietHost final: public rpc::Host::Server {
  // nbdkit.debug() and friends from the script go nowhere.
protected:
  kj::Promise<void> debug(DebugContext) override { return kj::READY_NOW; }
  kj::Promise<void> error(ErrorContext) override { return kj::READY_NOW; }
  kj::Promise<void> shutdown(ShutdownContext) override { return kj::READY_NOW; }
};

class ProcessCallsGate final: public capnp::Capability::Server {
  // The bootstrap Worker without `load` and `afterFork`: from a fuzz input they would run any
  // file as the script, and chdir/setuid the fuzzer itself. The fixture made them once, as
  // the plugin does; everything else goes to the real WorkerServer.
public:
  explicit ProcessCallsGate(WorkerServer& inner): inner(inner) {}
  // `inner` is owned by the fixture's own capability to it, which outlives this one.

  DispatchCallResult dispatchCall(uint64_t interfaceId, uint16_t methodId,
                                  capnp::CallContext<capnp::AnyPointer, capnp::AnyPointer>
                                      context) override {
    constexpr uint16_t LOAD = 0, AFTER_FORK = 5;  // schema/pyworker.capnp's ordinals
    if (interfaceId == capnp::typeId<rpc::Worker>() &&
        (methodId == LOAD || methodId == AFTER_FORK)) {
      return internalUnimplemented("pyworker.Worker", interfaceId, methodId);
    }
    return inner.dispatchCall(interfaceId, methodId, context);
  }

private:
  WorkerServer& inner;
};

}  // namespace

PythonRuntime::PythonRuntime() {
  registerNbdkitModule();
  Py_InitializeEx(0);
  PyEval_SaveThread();
}

WorkerFixture& WorkerFixture::get() {
  // Never destroyed, as the worker's own loop and interpreter are not: at exit it would tear
  // the event loop down under the calls capnp keeps running as daemon tasks once their
  // connection is gone, and their results would be destroyed with no loop left.
  static WorkerFixture* fixture = std::make_unique<WorkerFixture>().release();
  return *fixture;
}

WorkerFixture::WorkerFixture()
    : io_(kj::setupAsyncIo()),
      host_(kj::getCurrentThreadExecutor()),
      script_(host_),
      sharedMemory_(SHARED_MEMORY_BYTES),
      worker_(nullptr),
      exposed_(nullptr) {
  setNbdkitModuleHost(&host_);
  SharedData shared{sharedMemory_.data(), sharedMemory_.size()};
  auto server = kj::heap<WorkerServer>(Services{script_, executor_, host_, handles_});
  WorkerServer& real = *server;
  worker_ = kj::mv(server);
  exposed_ = capnp::Capability::Client(kj::heap<ProcessCallsGate>(real)).castAs<rpc::Worker>();

  auto load = worker_.loadRequest();  // the plugin's first call
  load.setScript(FUZZ_SCRIPT);
  load.setHost(kj::heap<QuietHost>());
  auto loaded = load.send().wait(io_.waitScope);
  if (loaded.getStatus().getErrno() != 0) {
    fprintf(stderr, "worker fixture: %s\n", loaded.getStatus().getMessage().cStr());
    abort();
  }

  int fds[2];
  KJ_SYSCALL(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds));
  laneOffers_ = kj::AutoCloseFd(fds[0]);
  lanes_.emplace(kj::AutoCloseFd(fds[1]), script_, host_, handles_, shared);
  openHandleId_ = openOnALane();
}

uint64_t WorkerFixture::openOnALane() {
  // As the plugin opens a connection (plugin/handle-opening.c++).
  LaneStream lane(newLane());
  capnp::MallocMessageBuilder message;
  auto call = message.initRoot<rpc::LaneCall>();
  call.setOpen();
  auto context = call.initContext();
  context.setExportName(kj::StringPtr("lanes").asBytes());
  context.setHasExportName(true);
  lane.write(message);
  auto words = lane.read(std::nullopt, std::chrono::microseconds(0));
  capnp::FlatArrayMessageReader reader(words, rpcReaderOptions());
  auto reply = reader.getRoot<rpc::LaneReply>();
  if (reply.getStatus().getErrno() != 0) {
    fprintf(stderr, "worker fixture: open: %s\n", reply.getStatus().getMessage().cStr());
    abort();
  }
  return reply.getHandleId();
}

void WorkerFixture::keepHandleOpen() {
  // A lane input may have closed it (a close call naming it): open another. Its id is new,
  // so the seeds name a handle that is gone until a mutation finds the new one.
  if (!handles_.find(openHandleId_)) openHandleId_ = openOnALane();
}

kj::AutoCloseFd WorkerFixture::newLane() { return offerNewLane(laneOffers_.get()); }

void WorkerFixture::settle() {
  // The kj loop keeps running meanwhile: a callback calling nbdkit.debug() waits for it.
  auto deadline = kj::systemPreciseMonotonicClock().now() + 10 * kj::SECONDS;
  while (executor_.busy() > 0) {
    if (kj::systemPreciseMonotonicClock().now() > deadline) {
      fprintf(stderr, "worker fixture: a script callback still runs 10 s after its connection "
                      "ended\n");
      abort();
    }
    io_.waitScope.poll();  // what finished on the pool is delivered through the loop
    std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
  kj::evalLast([]() {}).wait(io_.waitScope);
}

WorkerFixture::Connection::Connection(kj::AsyncIoStream& stream, rpc::Worker::Client bootstrap)
    : network(stream, capnp::rpc::twoparty::Side::SERVER, rpcReaderOptions()),
      rpcSystem(capnp::makeRpcServer(network, kj::mv(bootstrap))) {}

kj::Own<WorkerFixture::Connection> WorkerFixture::connect(kj::AsyncIoStream& stream) {
  return kj::heap<Connection>(stream, exposed_);
}

void WorkerFixture::serve(kj::AsyncIoStream& stream) {
  {
    auto connection = connect(stream);
    connection->onDisconnect().wait(io_.waitScope);
    settle();
  }
  settle();
}

}  // namespace pyworker::fuzz
