#pragma once
// The worker's servers in one process, for worker-requests-fuzz, worker-lanes-fuzz and their
// seed generators: an embedded interpreter running fuzz/worker-fixture.py, the real
// WorkerServer, served to one two-party connection at a time with the worker's reader limits,
// and the real LaneServer, with one handle kept open for lanes to name. Built once per process
// (interpreter start-up is the slow part).

#include <kj/async-io.h>

#include <capnp/rpc-twoparty.h>

#include <vector>

#include "host-link.h"
#include "lane-server.h"
#include "open-handle.h"
#include "python-executor.h"
#include "script.h"
#include "services.h"

#include "pyworker.capnp.h"

namespace pyworker::fuzz {

struct PythonRuntime {
  PythonRuntime();  // the interpreter as worker/main.c++ starts it, GIL released
};

class WorkerFixture {
public:
  static WorkerFixture& get();
  WorkerFixture();  // only through get()

  class Connection {
    // The worker's side of one connection, as in worker/main.c++.
  public:
    Connection(kj::AsyncIoStream& stream, rpc::Worker::Client bootstrap);
    kj::Promise<void> onDisconnect() { return network.onDisconnect(); }

  private:
    capnp::TwoPartyVatNetwork network;
    capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpcSystem;
  };

  kj::Own<Connection> connect(kj::AsyncIoStream& stream);
  // Starts serving `stream` (the worker's end of a connection) on this thread's loop.

  void settle();
  // Runs the loop until no script callback runs (so the next connection starts from a quiet
  // worker). One still running 10 s later aborts: a hang is a bug too.

  void serve(kj::AsyncIoStream& stream);
  // connect(), until the connection ends; settle() before and after it is gone.

  kj::AsyncIoContext& io() { return io_; }

  kj::AutoCloseFd newLane();
  // The plugin's end of a new lane, the other end handed to the LaneServer (its own thread).
  uint64_t openHandleId() const { return openHandleId_; }
  // A handle the fixture opened and keeps open, for lane calls to name.
  void keepHandleOpen();
  // After a lane input: opens another if the input closed it.

private:
  uint64_t openOnALane();

  PythonRuntime python_;
  kj::AsyncIoContext io_;
  HostLink host_;
  PythonExecutor executor_;
  Script script_;
  std::vector<uint8_t> sharedMemory_;
  HandleTable handles_;
  kj::AutoCloseFd laneOffers_;  // the plugin's end of the LaneServer's --lane-fd
  kj::Maybe<LaneServer> lanes_;
  rpc::Worker::Client worker_;   // the real bootstrap: the fixture loads the script with it
  rpc::Worker::Client exposed_;  // what a connection gets (see ProcessCallsGate)
  uint64_t openHandleId_ = 0;
};

}  // namespace pyworker::fuzz
