#pragma once
// The lanes to one worker (see "Lanes" in schema/pyworker.capnp): a lane is lent to one
// nbdkit thread for one call and then given back, so there are as many lanes as calls
// were ever in flight at once, each served by one worker thread. The most recently returned
// lane is lent first: its worker thread is the likeliest to be awake.

#include <kj/io.h>

#include <memory>
#include <mutex>
#include <vector>

#include <capnp/common.h>
#include <kj/array.h>

#include "lane-stream.h"

namespace pyworker {

class LanePool {
public:
  explicit LanePool(int offers);
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
    void discard() { lane_.reset(); }

  private:
    LanePool& pool_;
    std::unique_ptr<Lane> lane_;
  };

  Lease acquire();
  // An idle lane, or a new one offered to the worker. Throws kj::Exception DISCONNECTED when
  // the worker can take no lane (it is gone).

private:
  std::unique_ptr<Lane> newLane();

  int offers_;
  std::mutex mutex_;
  std::vector<std::unique_ptr<Lane>> idle_;
};

}  // namespace pyworker
