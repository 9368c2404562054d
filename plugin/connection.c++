#include "connection.h"

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include <kj/common.h>

#include "script-outcome.h"

namespace pyworker {

namespace {

constexpr int REOPEN_ATTEMPTS = 3;
// Workers tried for one re-open before the request that needed it fails.

constexpr int MAX_SENDS = 4;
// Sends of one request, when its workers keep being killed from outside (SIGKILL): a worker
// that crashes by itself (SIGSEGV, abort, exit) twice with the request in flight ends it
// sooner.

struct InFlight {
  std::atomic<unsigned>& count;
  explicit InFlight(std::atomic<unsigned>& count) : count(count) { count++; }
  ~InFlight() { count--; }
};

}  // namespace

Connection::Connection(bool readonly, ConnectionContext context, Binding binding,
                       Reopen reopen)
    : readonly_(readonly),
      context_(kj::mv(context)),
      reopen_(kj::mv(reopen)),
      binding_(kj::mv(binding)) {}

Connection::Binding Connection::binding() const {
  std::lock_guard<std::mutex> lock(mutex_);
  if (refused_) throw *refused_;
  return binding_;
}

std::shared_ptr<WorkerInstance> Connection::laneCall(
    kj::FunctionParam<void(rpc::LaneCall::Builder, const std::shared_ptr<WorkerInstance>&)>
        build,
    kj::FunctionParam<void(rpc::LaneReply::Reader)> read) {
  InFlight inFlight(requestsInFlight_);
  int sends = 0, crashes = 0;
  std::string deaths;
  // Deaths this request was in flight at: all of them, and those the worker came to by
  // itself (a crash, an exit) rather than by an outside SIGKILL.
  for (;;) {
    // Requests sent again go one at a time: each is then alone at risk if the new worker dies
    // too, so that only a request that kills workers itself is likely to meet two deaths.
    std::unique_lock<std::mutex> gate(replays_, std::defer_lock);
    if (sends > 0) gate.lock();
    auto bound = binding();
    try {
      bound.instance->laneCall(
          [&](rpc::LaneCall::Builder call) {
            call.setHandle(bound.handleId);
            build(call, bound.instance);
          },
          read);
      return bound.instance;
    } catch (const WorkerLost& lost) {
      if (!reopen_) {
        // The handle died with its worker: every later request would fail too.
        disconnectClient(true);
        throw;
      }
      if (lost.whileAnswering) {
        sends++;
        if (!lost.killedFromOutside) crashes++;
        deaths += (deaths.empty() ? "" : ", ") + std::to_string(lost.pid) + " " + lost.why;
      }
      if (crashes == 2 || sends == MAX_SENDS) {
        // So that a request that kills every worker cannot kill them for ever.
        nbdkit_error("pyworker: a request was in flight at %s (worker process %s): it is not "
                     "sent again",
                     crashes == 2 ? "two worker deaths in a row" : "too many worker deaths",
                     deaths.c_str());
        throw;
      }
      rebind(bound, lost);
    }
  }
}

void Connection::rebind(const Binding& lost, const WorkerLost& why) {
  std::lock_guard<std::mutex> reopening(reopening_);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (refused_) throw *refused_;
    if (binding_.instance != lost.instance) return;  // another thread re-opened it already
  }
  Binding fresh;
  for (int attempt = 1;; ++attempt) {
    try {
      fresh = reopen_(*this, lost, why, requestsInFlight_.load());
      break;
    } catch (const ReopenRefused&) {
      {
        std::lock_guard<std::mutex> lock(mutex_);
        refused_ = why;
      }
      disconnectClient(true);
      throw why;
    } catch (...) {
      // No worker to be had (logged: max-restarts, shutdown, a replacement that died or did
      // not start, or died while opening). The request was not sent to it: try another, a
      // few times; then this request fails with the loss, and a later one tries again.
      if (attempt == REOPEN_ATTEMPTS) throw why;
    }
  }
  std::lock_guard<std::mutex> lock(mutex_);
  binding_ = kj::mv(fresh);
}

ScriptOutcome Connection::close() {
  Binding bound;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    bound = binding_;
  }
  KJ_DEFER(bound.instance->releaseHandle(bound.handleId));
  ScriptOutcome outcome;
  if (bound.instance->isLost()) return outcome;
  try {
    bound.instance->laneCall(
        [&](rpc::LaneCall::Builder call) {
          call.setHandle(bound.handleId);
          call.setClose();
        },
        [&](rpc::LaneReply::Reader reply) { outcome = ScriptOutcome::from(reply.getStatus()); });
  } catch (const WorkerLost&) {
    // Gone meanwhile: its handle with it.
  }
  return outcome;
}

void Connection::remember(rpc::Query query, int32_t answer) {
  std::lock_guard<std::mutex> lock(mutex_);
  answers_.queries[query] = answer;
}

void Connection::rememberSize(int64_t size) {
  std::lock_guard<std::mutex> lock(mutex_);
  answers_.size = size;
}

void Connection::rememberBlockSize(uint32_t minimum, uint32_t preferred, uint32_t maximum) {
  std::lock_guard<std::mutex> lock(mutex_);
  answers_.blockSize = std::array<uint32_t, 3>{minimum, preferred, maximum};
}

Connection::Answers Connection::answers() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return answers_;
}

}  // namespace pyworker
