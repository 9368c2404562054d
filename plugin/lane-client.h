#pragma once
// A serving worker's lanes as the calling nbdkit thread uses them: one LaneCall out, one
// LaneReply back on a lane lent for the call, the Host calls the reply carries made on this
// thread. Transport only: what a failure means for the worker is WorkerInstance's decision.

#include <chrono>
#include <optional>
#include <string>

#include <kj/function.h>

#include "lane-pool.h"
#include "lane-stream.h"
#include "pyworker.capnp.h"

namespace pyworker {

class LaneClient {
public:
  LaneClient(int offers, std::string identity);
  // `offers`: the worker's --lane-fd peer (owned by its WorkerProcess, which outlives this).
  // `identity` ("pyworker[PID]") labels the Host calls replayed from replies.

  void call(kj::FunctionParam<void(rpc::LaneCall::Builder)> build,
            kj::FunctionParam<void(rpc::LaneReply::Reader)> read,
            std::optional<std::chrono::steady_clock::time_point> deadline,
            LaneStream::LaterDeadline later = nullptr);
  // `build` fills the call, `read` copies out what it needs from the reply (which lives only
  // during `read`). Throws LaneError: CLOSED (the worker hung up, or took no new lane),
  // TIMED_OUT (past `deadline`), MALFORMED (not a well-formed LaneReply, or `read` found it
  // unreadable). The lane of a failed call is discarded. `later`: asked when `deadline` has
  // passed, it may name another (LaneStream::read).

  void hangUp() { lanes_.hangUp(); }
  // The worker is gone: calls waiting on a lane end now (LanePool::hangUp()).

private:
  LanePool lanes_;
  std::string identity_;
};

}  // namespace pyworker
