#pragma once
// One nbdkit connection (nbdkit's per-connection handle): what it was opened with, the answers
// nbdkit has cached from it, and its bindings to the worker handles that serve it: one, or
// with spread=on one on every worker. The bindings are read and changed under the
// connection's own lock; no capnp object lives here (a handle is an id in its worker's
// handle table, from the open lane call to the close one). With recover=reopen a connection
// whose worker is lost is bound again, to a handle opened on the worker that replaces it, and
// the requests that were in flight are sent again (a spread connection sends them to its other
// handles and re-opens the lost one at its next request).

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

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
    bool operator==(const Binding& other) const;
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
  // Opens the connection again on the worker that now serves `lost`'s slot and checks its
  // answers. `requestsInFlight` is how many are sent again there (0: a spread connection's
  // handle restored, its requests went to the others). Throws ReopenRefused, or anything
  // else when no worker can be had now (a later request tries again).

  using Spread = std::function<std::vector<Binding>(const Connection& connection,
                                                    const Binding& first)>;
  // spread=on: opens the connection on the other workers, once nbdkit has all its answers
  // from `first`; returns the new bindings, none (logged why) when the connection stays on
  // one worker.

  Connection(bool readonly, ConnectionContext context, Binding binding, Reopen reopen,
             Spread spread = {});
  // An empty `reopen` (recover=off): a lost worker ends the connection.
  KJ_DISALLOW_COPY(Connection);

  enum class Target {
    LEAST_BUSY,  // data requests: the handle whose worker has the fewest calls in flight
    FIRST,       // what nbdkit caches (size, can_*, ...): the handle nbdkit's answers came from
    EVERY,       // flush: every handle in turn; the outcome is the first failure
  };

  std::shared_ptr<WorkerInstance> laneCall(
      Target target,
      kj::FunctionParam<void(rpc::LaneCall::Builder, const std::shared_ptr<WorkerInstance>&)>
          build,
      kj::FunctionParam<void(rpc::LaneReply::Reader)> read);
  // One of the connection's callbacks on a lane to a handle (the call's handle id is set
  // here; `build` is told the worker it goes to, whose shared memory a payload may use).
  // Returns the worker that answered, for blame if the reply fails its checks. If the worker
  // is lost: with `reopen`, the call goes to another of the connection's handles, or when it
  // has no other, the connection is bound to a new handle (one re-open however many threads
  // find out at once) and the call is made again; otherwise, or when that fails, the client's
  // connection is ended where nbdkit can (1.34+: every later request would fail) and
  // WorkerLost is rethrown. The first LEAST_BUSY or EVERY call spreads the connection.

  std::shared_ptr<WorkerInstance> laneCall(
      kj::FunctionParam<void(rpc::LaneCall::Builder, const std::shared_ptr<WorkerInstance>&)>
          build,
      kj::FunctionParam<void(rpc::LaneReply::Reader)> read) {
    return laneCall(Target::LEAST_BUSY, build, read);
  }

  ScriptOutcome close();
  // The script's close() on every handle's worker, on a lane (so on the calling nbdkit
  // thread); the first failure is the outcome. Nothing to close on a lost worker: no re-open
  // for that.

  std::shared_ptr<WorkerInstance> first() const;
  // The worker of the handle whose answers nbdkit caches: what it said of its script
  // (WorkerInstance::scriptFacts()) spares round trips, and it is blamed for those answers.

  size_t handleCount() const;
  // How many handles serve the connection now (more than one: spread).

  void remember(rpc::Query query, int32_t answer);
  void rememberSize(int64_t size);
  void rememberBlockSize(uint32_t minimum, uint32_t preferred, uint32_t maximum);
  Answers answers() const;

  bool readonly() const { return readonly_; }
  const ConnectionContext& context() const { return context_; }

private:
  struct Missing {
    // A spread connection's handle whose worker was lost, to be opened again.
    Binding lost;
    WorkerLost why;
  };

  std::optional<Binding> pick(Target target, const std::optional<Binding>& only) const;
  // The handle a call goes to (`only`, if the connection still has it). Throws the loss that
  // ended the connection, once a re-open was refused.
  std::shared_ptr<WorkerInstance> deliver(
      Target target, std::optional<Binding> only,
      kj::FunctionParam<void(rpc::LaneCall::Builder, const std::shared_ptr<WorkerInstance>&)>
          build,
      kj::FunctionParam<void(rpc::LaneReply::Reader)> read);
  // One call with the loss rules of laneCall(); null when `only` was dropped before it
  // answered.
  bool drop(const Binding& lost, const WorkerLost& why);
  // A spread connection forgets a lost handle while others remain (to be restored); false
  // when it is the connection's last.
  void rebind(const Binding& lost, const WorkerLost& why);
  void spreadOnce();
  void restoreMissing();
  // Re-opens the lost handles of a spread connection, unless another thread is at it.

  const bool readonly_;
  const ConnectionContext context_;
  const Reopen reopen_;
  const Spread spread_;
  std::atomic<bool> spreadDecided_ = false;
  std::atomic<bool> anyMissing_ = false;
  std::atomic<unsigned> requestsInFlight_ = 0;
  mutable std::atomic<unsigned> rotation_ = 0;  // ties between equally busy handles take turns
  std::mutex replays_;
  // Held by a request while it is sent again.
  std::mutex reopening_;
  // Held for a whole re-open or spreading: other threads that found the same worker lost
  // wait, then see the new binding.
  mutable std::mutex mutex_;
  std::vector<Binding> bindings_;  // never empty; [0] answers what nbdkit caches
  std::vector<Missing> missing_;
  std::chrono::steady_clock::time_point nextRestore_{};
  // After a restore found no worker: not before then again (its other handles serve
  // meanwhile, and each failed attempt is logged).
  std::optional<WorkerLost> refused_;
  Answers answers_;
};

}  // namespace pyworker
