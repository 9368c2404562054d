#include "connection.h"

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include <kj/common.h>

#include <algorithm>

#include "script-outcome.h"

namespace pyworker {

namespace {

constexpr int REOPEN_ATTEMPTS = 3;
// Workers tried for one re-open before the request that needed it fails.

constexpr int MAX_SENDS = 4;
// Sends of one request, when its workers keep being killed from outside (SIGKILL): a worker
// that crashes by itself (SIGSEGV, abort, exit) twice with the request in flight ends it
// sooner.

constexpr auto RESTORE_INTERVAL = std::chrono::seconds(1);
// Between attempts to re-open a spread connection's lost handle when no worker could be had.

struct InFlight {
  std::atomic<unsigned>& count;
  explicit InFlight(std::atomic<unsigned>& count) : count(count) { count++; }
  ~InFlight() { count--; }
};

}  // namespace

Connection::Connection(bool readonly, ConnectionContext context, Binding binding,
                       Reopen reopen, Spread spread)
    : readonly_(readonly),
      context_(kj::mv(context)),
      reopen_(kj::mv(reopen)),
      spread_(kj::mv(spread)),
      spreadDecided_(!spread_) {
  bindings_.push_back(kj::mv(binding));
}

bool Connection::Binding::operator==(const Binding& other) const {
  return instance == other.instance && handleId == other.handleId;
}

std::optional<Connection::Binding> Connection::pick(Target target,
                                                    const std::optional<Binding>& only) const {
  std::lock_guard<std::mutex> lock(mutex_);
  if (refused_) throw *refused_;
  if (only) {
    if (std::find(bindings_.begin(), bindings_.end(), *only) == bindings_.end()) {
      return std::nullopt;
    }
    return only;
  }
  if (target == Target::FIRST || bindings_.size() == 1) return bindings_.front();
  size_t n = bindings_.size(), start = rotation_++ % n, best = start;
  for (size_t i = 1; i < n; ++i) {
    size_t candidate = (start + i) % n;
    if (bindings_[candidate].instance->callsInFlight() <
        bindings_[best].instance->callsInFlight()) {
      best = candidate;
    }
  }
  return bindings_[best];
}

std::shared_ptr<WorkerInstance> Connection::laneCall(
    Target target,
    kj::FunctionParam<void(rpc::LaneCall::Builder, const std::shared_ptr<WorkerInstance>&)>
        build,
    kj::FunctionParam<void(rpc::LaneReply::Reader)> read) {
  InFlight inFlight(requestsInFlight_);
  if (target != Target::FIRST) {
    if (!spreadDecided_.load()) spreadOnce();
    if (anyMissing_.load()) restoreMissing();
  }
  if (target != Target::EVERY) return deliver(target, std::nullopt, build, read);
  std::vector<Binding> every;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    every = bindings_;
  }
  if (every.size() == 1) return deliver(target, std::nullopt, build, read);
  std::shared_ptr<WorkerInstance> last;
  for (auto& binding : every) {
    if (auto from = deliver(target, binding, build, read)) last = from;
  }
  if (!last) return deliver(target, std::nullopt, build, read);  // every one was lost meanwhile
  return last;
}

std::shared_ptr<WorkerInstance> Connection::deliver(
    Target target, std::optional<Binding> only,
    kj::FunctionParam<void(rpc::LaneCall::Builder, const std::shared_ptr<WorkerInstance>&)>
        build,
    kj::FunctionParam<void(rpc::LaneReply::Reader)> read) {
  int sends = 0, crashes = 0;
  std::string deaths;
  // Deaths this request was in flight at: all of them, and those the worker came to by
  // itself (a crash, an exit) rather than by an outside SIGKILL.
  for (;;) {
    // Requests sent again go one at a time: each is then alone at risk if the new worker dies
    // too, so that only a request that kills workers itself is likely to meet two deaths.
    std::unique_lock<std::mutex> gate(replays_, std::defer_lock);
    if (sends > 0) gate.lock();
    auto picked = pick(target, only);
    if (!picked) return nullptr;  // `only` was lost meanwhile
    auto bound = *picked;
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
        // The handle died with its worker: every later request fails too, also those that a
        // spread connection's other handles could answer (the lost one's state is gone).
        {
          std::lock_guard<std::mutex> lock(mutex_);
          if (!refused_) {
            refused_ = lost;
            refused_->whileAnswering = false;  // what later requests are told: not sent
          }
        }
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
      if (drop(bound, lost)) {
        // The connection's other handles serve on; a flush has reached them already or will.
        if (only) return nullptr;
        continue;
      }
      rebind(bound, lost);
      only.reset();  // the connection's one handle is a new one: the call goes there
    }
  }
}

bool Connection::drop(const Binding& lost, const WorkerLost& why) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto found = std::find(bindings_.begin(), bindings_.end(), lost);
  if (found == bindings_.end()) return true;  // dropped or re-opened by another thread
  if (bindings_.size() == 1) return false;
  bindings_.erase(found);
  missing_.push_back({lost, why});
  anyMissing_ = true;
  return true;
}

void Connection::rebind(const Binding& lost, const WorkerLost& why) {
  std::lock_guard<std::mutex> reopening(reopening_);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (refused_) throw *refused_;
    if (std::find(bindings_.begin(), bindings_.end(), lost) == bindings_.end()) {
      return;  // another thread re-opened it already
    }
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
  *std::find(bindings_.begin(), bindings_.end(), lost) = kj::mv(fresh);
}

void Connection::spreadOnce() {
  std::lock_guard<std::mutex> reopening(reopening_);
  if (spreadDecided_.load()) return;
  Binding first;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    first = bindings_.front();
  }
  std::vector<Binding> others;
  try {
    others = spread_(*this, first);
  } catch (...) {
    // Logged by spread_: the connection stays on one worker.
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& other : others) bindings_.push_back(kj::mv(other));
  }
  spreadDecided_ = true;
}

void Connection::restoreMissing() {
  std::unique_lock<std::mutex> reopening(reopening_, std::try_to_lock);
  if (!reopening.owns_lock()) return;  // another request is restoring (or re-opening)
  auto now = std::chrono::steady_clock::now();
  std::vector<Missing> missing;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (now < nextRestore_) return;
    missing.swap(missing_);
    anyMissing_ = false;
  }
  std::vector<Missing> later;
  for (auto& m : missing) {
    try {
      auto fresh = reopen_(*this, m.lost, m.why, 0);
      std::lock_guard<std::mutex> lock(mutex_);
      bindings_.push_back(kj::mv(fresh));
    } catch (const ReopenRefused&) {
      // Logged: the connection goes on without a handle on that worker.
    } catch (...) {
      later.push_back(kj::mv(m));  // no worker now: a later request tries again
    }
  }
  if (!later.empty()) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& m : later) missing_.push_back(kj::mv(m));
    anyMissing_ = true;
    nextRestore_ = std::chrono::steady_clock::now() + RESTORE_INTERVAL;
  }
}

ScriptOutcome Connection::close() {
  std::vector<Binding> every;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    every = bindings_;
  }
  ScriptOutcome first;
  for (auto& bound : every) {
    ScriptOutcome outcome;
    bool closed = false;  // the close call was answered
    KJ_DEFER(if (closed) {
      bound.instance->handleClosed();
    } else {
      bound.instance->closeHandle(bound.handleId);  // once more, or nothing if lost
    });
    try {
      if (!bound.instance->isLost()) {
        bound.instance->laneCall(
            [&](rpc::LaneCall::Builder call) {
              call.setHandle(bound.handleId);
              call.setClose();
            },
            [&](rpc::LaneReply::Reader reply) {
              outcome = ScriptOutcome::from(reply.getStatus());
            });
        closed = true;
      }
    } catch (const WorkerLost&) {
      // Gone meanwhile: its handle with it.
    }
    if (first.error == 0) first = outcome;
  }
  return first;
}

std::shared_ptr<WorkerInstance> Connection::first() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return bindings_.front().instance;
}

size_t Connection::handleCount() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return bindings_.size();
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
