#include "worker-instance.h"

#include <signal.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "guard.h"
#include "reply-checks.h"
#include "script-outcome.h"

namespace pyworker {

namespace {

constexpr auto LANE_CLOSED_DEATH_WAIT = 200 * kj::MILLISECONDS;
// How long a lane's end (or a connection's) may come before its worker's exit and still count
// as that death.

constexpr auto STALL_TIME = std::chrono::seconds(1);

constexpr auto EXIT_GRACE = 3 * kj::SECONDS;
// For the worker to exit once told (its atexit handlers) on a busy machine; then it is killed.
constexpr auto MINIMUM_EXIT_GRACE = 100 * kj::MILLISECONDS;

constexpr auto RETIRED_CLEANUP_LIMIT = std::chrono::seconds(60);
// cleanup() of a retired worker without timeout=.

struct CallCount {
  // Counts one call as in flight for its lifetime.
  std::atomic<uint64_t>& finished;
  CallCount(std::atomic<uint64_t>& started, std::atomic<uint64_t>& finished)
      : finished(finished) {
    started++;
  }
  ~CallCount() { finished++; }
};

}  // namespace

WorkerInstance::WorkerInstance(size_t slot, std::unique_ptr<WorkerProcess> process,
                               kj::AutoCloseFd servingSocket,
                               std::optional<std::chrono::milliseconds> callLimit, bool pdb)
    : slot_(slot),
      process_(kj::mv(process)),
      callLimitMilliseconds_(callLimit ? std::max<int64_t>(callLimit->count(), 1) : 0),
      pause_(pdb),
      lanes_(process_->laneOffers(), process_->identity()),
      rpc_(kj::mv(servingSocket), *process_, pause_, [this] { lose(Loss::DISCONNECTED); }) {}

WorkerInstance::~WorkerInstance() noexcept {
  if (serving_.load() && !cleanedUp_.load() && !isLost()) {
    // Retired (a reload's previous generation, its last connection closed): it ends normally,
    // so its script's cleanup() runs, as nbdkit runs it before unload. Bounded: it holds the
    // thread that closed that connection.
    if (callLimitMilliseconds_.load() == 0) {
      callLimitMilliseconds_ = std::chrono::milliseconds(RETIRED_CLEANUP_LIMIT).count();
    }
    try {
      cleanUp();
    } catch (const CallTimedOut& e) {
      nbdkit_error("pyworker: cleanup in retired worker process %d took longer than %g "
                   "seconds: killed it",
                   e.pid, e.seconds);
    } catch (const WorkerLost& e) {
      nbdkit_error("pyworker: retired worker process %d was lost in cleanup: %s",
                   static_cast<int>(e.pid), e.why.c_str());
    } catch (const kj::Exception& e) {
      nbdkit_error("pyworker: cleanup in retired worker process %d: %s",
                   static_cast<int>(pid()), e.getDescription().cStr());
    }
  }
  stop();
}

void WorkerInstance::stop() {
  serving_ = false;  // stopped: no cleanup() after this (nor an attempt at one)
  // The RPC thread first, so that it does not report a deliberate stop as a death; it copies
  // what the worker prints while it exits (atexit handlers) to the log.
  auto start = kj::systemPreciseMonotonicClock().now();
  rpc_.stop(EXIT_GRACE);
  auto left = EXIT_GRACE - (kj::systemPreciseMonotonicClock().now() - start);
  process_->stop(kj::max(left, MINIMUM_EXIT_GRACE));
}

void WorkerInstance::beginServing(std::optional<std::chrono::milliseconds> timeout) {
  callLimitMilliseconds_ = timeout ? std::max<int64_t>(timeout->count(), 1) : 0;
  serving_ = true;
}

void WorkerInstance::cleanUp() {
  if (cleanedUp_.exchange(true)) return;
  run([](rpc::Worker::Client& worker) { return worker.cleanupRequest().send().ignoreResult(); });
}

void WorkerInstance::lose(Loss cause) {
  if (lost_.exchange(true)) return;
  cause_ = cause;
  lanes_.hangUp();
  if (cause == Loss::INVALID_REPLY) {
    nbdkit_error("pyworker: worker process %d sent an invalid reply: killing it; new "
                 "connections get a new worker", static_cast<int>(pid()));
  }
  // A dying process's sockets close a moment before its pidfd says it has ended; a worker
  // whose connection broke while it lives on is of no use either.
  if (cause == Loss::DISCONNECTED && process_->hasExited(LANE_CLOSED_DEATH_WAIT)) return;
  killedHere_ = true;
  process_->kill();
}

void WorkerInstance::reject() { lose(Loss::INVALID_REPLY); }

WorkerLost WorkerInstance::lostError() {
  switch (cause_.load()) {
  case Loss::INVALID_REPLY:
    return {pid(), "killed: it had sent an invalid reply"};
  case Loss::TIMED_OUT:
    return {pid(), "killed: a callback ran past timeout="};
  case Loss::DISCONNECTED:
    break;
  }
  process_->hasExited(LANE_CLOSED_DEATH_WAIT);
  WorkerLost lost{pid(), process_->describeExit()};
  lost.killedFromOutside = !killedHere_.load() && process_->wasKilledBy(SIGKILL);
  return lost;
}

void WorkerInstance::timedOut() {
  // A hung script (or a worker stopped in a debugger) past its limit: kill it, so that every
  // request waiting on it fails now and new connections get a new worker.
  lose(Loss::TIMED_OUT);
  throw CallTimedOut{callLimitMilliseconds_.load() / 1000.0, static_cast<int>(pid())};
}

WorkerLost WorkerInstance::lostBeforeCall() {
  auto lost = lostError();
  lost.whileAnswering = false;
  return lost;
}

void WorkerInstance::run(Call call) {
  if (isLost()) throw lostBeforeCall();
  CallCount count(callsStarted_, callsFinished_);
  int64_t limit = callLimitMilliseconds_.load();
  try {
    rpc_.run(call, limit ? RpcThread::Deadline(std::chrono::milliseconds(limit))
                         : std::nullopt);
  } catch (const RpcThread::DeadlinePassed&) {
    timedOut();
  } catch (const kj::Exception& e) {
    if (e.getType() != kj::Exception::Type::DISCONNECTED) throw;
    lose(Loss::DISCONNECTED);
    throw lostError();
  }
}

void WorkerInstance::closeHandle(uint64_t id) noexcept {
  handlesOpen_--;
  if (isLost()) return;  // its handles went with it
  try {
    ScriptOutcome outcome;
    laneCall(
        [&](rpc::LaneCall::Builder call) {
          call.setHandle(id);
          call.setClose();
        },
        [&](rpc::LaneReply::Reader reply) { outcome = ScriptOutcome::from(reply.getStatus()); });
    if (outcome.error != 0) nbdkit_error("%s", outcome.message.c_str());
  } catch (...) {
    // Lost, killed or refused meanwhile: the worker closes what is left when it ends.
  }
}

void WorkerInstance::laneCall(kj::FunctionParam<void(rpc::LaneCall::Builder)> build,
                              kj::FunctionParam<void(rpc::LaneReply::Reader)> read) {
  if (isLost()) throw lostBeforeCall();
  CallCount count(callsStarted_, callsFinished_);
  int64_t limit = callLimitMilliseconds_.load();
  std::optional<std::chrono::steady_clock::time_point> deadline;
  if (limit != 0) deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(limit);
  LaneStream::LaterDeadline later;  // pdb=on's pause: only a call with a deadline needs it
  if (deadline) later = [&]() { return pause_.laterDeadline(std::chrono::milliseconds(limit)); };
  try {
    lanes_.call(build, read, deadline, later);
  } catch (const LaneError& e) {
    switch (e.kind) {
    case LaneError::CLOSED:
      // A dying process's sockets close a moment before its pidfd says it has ended; a lost
      // worker's lanes are shut down here (lose()).
      if (isLost() || process_->hasExited(LANE_CLOSED_DEATH_WAIT)) {
        lose(Loss::DISCONNECTED);
        throw lostError();
      }
      // Alive, and it hung up on this call. A correct worker does that when it has no memory
      // left for the lane (under memory=); a lying one gains nothing by it that an error
      // reply would not give it. The lane is discarded, the worker serves on.
      throw LaneRefused{static_cast<int>(pid())};
    case LaneError::TIMED_OUT:
      timedOut();
    case LaneError::MALFORMED:
      reject();
      throw BadReply(BadReply::WORKER,
                     std::string("invalid reply from the worker: malformed lane message: ") +
                         e.what());
    }
    throw;
  }
}

bool WorkerInstance::hasStalledCall(std::chrono::steady_clock::time_point now) {
  uint64_t finished = callsFinished_.load();
  if (finished != lastSeenFinished_ || callsStarted_.load() == finished) {
    lastSeenFinished_ = finished;
    lastProgress_ = now;
    return false;
  }
  return now - lastProgress_ >= STALL_TIME;
}

}  // namespace pyworker
