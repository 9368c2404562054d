#pragma once
// One nbdkit connection (nbdkit's per-connection handle): what it was opened with, the answers
// nbdkit has cached from it, and its binding to the worker handle that serves it. The binding
// is read and changed under the connection's own lock; no capnp object lives here (a handle's
// capability stays on its worker's RPC thread, keyed by handle id). Everything a re-open on
// another worker would need is kept: the recipe (readonly flag, captured context) and what the
// client was already told.

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>

#include <kj/function.h>

#include "connection-context.h"
#include "pyworker.capnp.h"
#include "worker-instance.h"

namespace pyworker {

class Connection {
public:
  struct Binding {
    std::shared_ptr<WorkerInstance> instance;
    uint64_t handleId = 0;
  };

  Connection(bool readonly, ConnectionContext context, Binding binding);
  KJ_DISALLOW_COPY(Connection);

  std::shared_ptr<WorkerInstance> laneCall(
      kj::FunctionParam<void(rpc::LaneCall::Builder, WorkerInstance&)> build,
      kj::FunctionParam<void(rpc::LaneReply::Reader)> read);
  // One of the connection's callbacks on a lane to its handle (the call's handle id is set
  // here; `build` is told the worker it goes to, whose shared memory a payload may use). Returns the worker that answered, for blame if the reply fails its checks. If the
  // worker is lost, the client's connection is ended where nbdkit can (1.34+: every later
  // request would fail), and WorkerLost is rethrown.

  void close();
  // The script's close() on the handle's worker (releasing its capability there).

  void remember(rpc::Query query, int32_t answer);
  void rememberSize(int64_t size);
  // What nbdkit was told: it caches these for the connection's life, so a handle that serves
  // it later must give the same answers.

  bool readonly() const { return readonly_; }
  const ConnectionContext& context() const { return context_; }

private:
  Binding binding() const;

  const bool readonly_;
  const ConnectionContext context_;
  mutable std::mutex mutex_;
  Binding binding_;
  std::optional<int64_t> size_;
  std::map<rpc::Query, int32_t> answers_;
};

}  // namespace pyworker
