#pragma once
// The lanes to one worker (see "Lanes" in schema/pyworker.capnp): a lane is lent to one
// nbdkit thread for one call and then given back, so there are as many lanes as calls were
// ever in flight at once, each served by one worker thread, up to a limit: past it a caller
// waits for a lane to come back rather than costing the worker another thread (each takes
// address space, which memory= bounds). The most recently returned lane is lent first: its
// worker thread is the likeliest to be awake.

#include <kj/io.h>

#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <set>
#include <vector>

#include <capnp/common.h>
#include <kj/array.h>

#include "lane-stream.h"

namespace pyworker {

class LanePool {
public:
  static constexpr size_t MAX_LANES = 32;
  // Per worker: two connections' worth of nbdkit's default 16 threads each. Calls beyond it
  // run in turn, as in-process they would run behind the GIL anyway (only callbacks that
  // release it, such as sleeps and I/O, gain from more). README "memory=" has the figures.

  explicit LanePool(int offers, size_t limit = MAX_LANES);
  // `offers` is the worker's --lane-fd peer (owned by WorkerProcess, which outlives the pool).
  KJ_DISALLOW_COPY(LanePool);

  struct Lane {
    LaneStream stream;
    kj::Array<capnp::word> scratch;  // newMessageScratch(): each call's first segment
    explicit Lane(kj::AutoCloseFd socket);
  };

  class Lease {
    // One lane for one call. Given back to the pool when destroyed, unless discarded (a lane
    // whose call failed halfway is in an unknown state).
  public:
    Lease(LanePool& pool, std::unique_ptr<Lane> lane) : pool_(pool), lane_(kj::mv(lane)) {}
    Lease(Lease&&) = default;
    ~Lease();
    Lane& operator*() const { return *lane_; }
    Lane* operator->() const { return lane_.get(); }
    void discard();

  private:
    LanePool& pool_;
    std::unique_ptr<Lane> lane_;
  };

  Lease acquire();
  // An idle lane, or a new one offered to the worker, or, with `limit` lanes lent, the first
  // one given back (waiting as long as it takes: a call that hangs holds its lane until
  // timeout= kills the worker, as it holds nbdkit's thread). Throws kj::Exception DISCONNECTED
  // when the worker can take no lane (it is gone).

  size_t lanes() const;
  // Lanes that exist (lent or idle).

  void hangUp();
  // The worker is gone: every lane is shut down, so that a call waiting on one ends at once
  // (CLOSED) even where a process that outlived the worker holds copies of its ends (without
  // a cgroup, a setsid() daemon of its script); acquire() fails from now on.

private:
  void forget(Lane* discarded);
  // A lent lane was discarded: room for a new one.
  void track(Lane* lane);
  // With mutex_ held: `lane` exists (shut down at once if the pool has hung up).

  int offers_;
  size_t limit_;
  mutable std::mutex mutex_;
  std::condition_variable returned_;
  size_t lanes_ = 0;
  std::vector<std::unique_ptr<Lane>> idle_;
  std::set<Lane*> existing_;  // lent or idle, for hangUp()
  bool hungUp_ = false;
};

}  // namespace pyworker
