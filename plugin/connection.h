#pragma once
// One nbdkit connection (nbdkit's per-connection handle): what it was opened with, the answers
// nbdkit has cached from it, and its binding to the worker handle that serves it. The binding
// is read and changed under the connection's own lock; no capnp object lives here (a handle's
// capability stays on its worker's RPC thread, keyed by handle id). With recover=reopen a
// connection whose worker is lost is bound again, to a handle opened on the worker that
// replaces it, and the requests that were in flight are sent again.

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>

#include <kj/function.h>

#include "connection-context.h"
#include "pyworker.capnp.h"
#include "script-outcome.h"
#include "worker-instance.h"
#include "worker-lost.h"

namespace pyworker {

class Connection {
public:
  struct Binding {
    std::shared_ptr<WorkerInstance> instance;
    uint64_t handleId = 0;
  };

  struct Answers {
    // What nbdkit was told: it caches these for the connection's life, so a handle that
    // serves the connection later must give the same ones.
    std::optional<int64_t> size;
    std::map<rpc::Query, int32_t> queries;
    std::optional<std::array<uint32_t, 3>> blockSize;  // minimum, preferred, maximum
  };

  struct ReopenRefused {
    // The re-open was tried and refused (logged): the connection fails from now on.
  };

  using Reopen = std::function<Binding(const Connection& connection, const Binding& lost,
                                       const WorkerLost& why, unsigned requestsInFlight)>;
  // Opens the connection again on another worker and checks its answers. Throws
  // ReopenRefused, or anything else when no worker can be had now (a later request tries
  // again).

  Connection(bool readonly, ConnectionContext context, Binding binding, Reopen reopen);
  // An empty `reopen` (recover=off): a lost worker ends the connection.
  KJ_DISALLOW_COPY(Connection);

  std::shared_ptr<WorkerInstance> laneCall(
      kj::FunctionParam<void(rpc::LaneCall::Builder, const std::shared_ptr<WorkerInstance>&)>
          build,
      kj::FunctionParam<void(rpc::LaneReply::Reader)> read);
  // One of the connection's callbacks on a lane to its handle (the call's handle id is set
  // here; `build` is told the worker it goes to, whose shared memory a payload may use).
  // Returns the worker that answered, for blame if the reply fails its checks. If the worker
  // is lost: with `reopen`, the connection is bound to a new handle (one re-open however many
  // threads find out at once) and the call is made again, once; otherwise, or when that
  // fails, the client's connection is ended where nbdkit can (1.34+: every later request
  // would fail) and WorkerLost is rethrown.

  ScriptOutcome close();
  // The script's close() on the handle's worker, on a lane (so on the calling nbdkit thread),
  // then the handle's capability released there. Nothing to close on a lost worker: no
  // re-open for that.

  void remember(rpc::Query query, int32_t answer);
  void rememberSize(int64_t size);
  void rememberBlockSize(uint32_t minimum, uint32_t preferred, uint32_t maximum);
  Answers answers() const;

  bool readonly() const { return readonly_; }
  const ConnectionContext& context() const { return context_; }

private:
  Binding binding() const;
  // Throws the loss that ended the connection, once a re-open was refused.
  void rebind(const Binding& lost, const WorkerLost& why);

  const bool readonly_;
  const ConnectionContext context_;
  const Reopen reopen_;
  std::atomic<unsigned> requestsInFlight_ = 0;
  std::mutex replays_;
  // Held by a request while it is sent again.
  std::mutex reopening_;
  // Held for a whole re-open: other threads that found the same worker lost wait, then see
  // the new binding.
  mutable std::mutex mutex_;
  Binding binding_;
  std::optional<WorkerLost> refused_;
  Answers answers_;
};

}  // namespace pyworker
