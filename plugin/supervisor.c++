#include "supervisor.h"

#include <sys/stat.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <kj/debug.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "bring-up.h"
#include "guard.h"
#include "script-outcome.h"

namespace pyworker {

namespace {

constexpr auto SHUTDOWN_GRACE = std::chrono::seconds(2);
// How long nbdkit's shutdown may wait for callbacks in flight before their workers are killed.

constexpr auto BRING_UP_LIMIT = std::chrono::seconds(60);
// How long each step of bringing up a replacement or reloaded worker may take when timeout= is
// not given (with it, timeout= applies): a script that blocks at load or in config there would
// otherwise hold a client, or every later reload, for ever.

std::string baseName(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

}  // namespace

Supervisor::Supervisor(WorkerSetup setup) : setup_(kj::mv(setup)) {
  slots_.resize(std::max(1u, setup_.workers));
}

Supervisor::~Supervisor() noexcept {
  std::vector<std::shared_ptr<WorkerInstance>> remaining;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
    // A worker still being brought up (a reload, a replacement) is of no use any more; killed,
    // its bring-up fails at once instead of holding the reload watch's thread.
    for (auto& weak : bringingUp_) {
      if (auto instance = weak.lock()) instance->process().kill();
    }
  }
  reloadWatch_.reset();
  shutdownWatch_.reset();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& slot : slots_) slot.current.reset();
    for (auto& weak : instances_) {
      if (auto instance = weak.lock()) remaining.push_back(kj::mv(instance));
    }
  }
  // nbdkit does not close the connections still open when it quits: their workers must not
  // outlive unload (an RPC thread running on in an unmapped plugin crashes nbdkit's exit).
  for (auto& instance : remaining) instance->stop();
  for (auto& slot : slots_) {
    slot.configLink.reset();
    slot.firstServingSocket = nullptr;
    slot.firstProcess.reset();
  }
  configIo_.reset();
}

std::unique_ptr<WorkerProcess> Supervisor::spawn(bool withConfigSocket, const char* what) {
  auto process = std::make_unique<WorkerProcess>(setup_.workerPath, baseName(setup_.script),
                                                 withConfigSocket, setup_.memoryLimit,
                                                 setup_.workerArguments);
  if (setup_.pdb) process->removesPdbRendezvous();
  int pid = static_cast<int>(process->pid());
  nbdkit_debug("pyworker: started %s process %d for %s", what, pid, setup_.script.c_str());
  if (setup_.debugWait && !setup_.pdb) {  // with pdb=on the worker says it (pdb-session.h)
    // Said on stderr as well: without -v nbdkit_debug() is silent, and this is for a person.
    fprintf(stderr,
            "nbdkit: pyworker: debug-wait: %s process %d waits for a debugger before it loads "
            "%s:\n  gdb -p %d   (set breakpoints, then 'continue')\n",
            what, pid, setup_.script.c_str(), pid);
    fflush(stderr);
  }
  return process;
}

const ScriptInfo& Supervisor::start() {
  configIo_ = std::make_unique<kj::AsyncIoContext>(kj::setupAsyncIo());
  scriptAsLoaded_ = stampOf(setup_.script);  // before any worker reads it
  for (auto& slot : slots_) {
    slot.firstProcess = spawn(true, "worker");
    auto sockets = slot.firstProcess->takeSockets();
    slot.firstServingSocket = kj::mv(sockets.serving);
    slot.configLink = std::make_unique<ConfigPhaseLink>(*configIo_, kj::mv(sockets.config),
                                                        *slot.firstProcess);
    info_ = loadScript(*slot.configLink, setup_, Start::NBDKIT);
  }
  return info_;
}

void Supervisor::forEachWorker(const std::function<void(WorkerLink&)>& call) {
  if (!forked_) {
    for (auto& slot : slots_) call(*slot.configLink);
    return;
  }
  for (auto& instance : liveInstances()) call(*instance);
}

std::vector<std::shared_ptr<WorkerInstance>> Supervisor::liveInstances() {
  std::vector<std::shared_ptr<WorkerInstance>> live;
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto& slot : slots_) {
    if (slot.current && !slot.current->isLost()) live.push_back(slot.current);
  }
  return live;
}

void Supervisor::cleanUp() {
  if (!forked_) {
    forEachWorker([](WorkerLink& link) {
      link.run([](rpc::Worker::Client& worker) {
        return worker.cleanupRequest().send().ignoreResult();
      });
    });
    return;
  }
  for (auto& instance : liveInstances()) instance->cleanUp();
}

WorkerLink& Supervisor::link() {
  // After the fork a link is only safe to use with its WorkerInstance held: instance().
  KJ_REQUIRE(!forked_, "the config-phase link is gone after the fork");
  return *slots_.front().configLink;
}

void Supervisor::endConfigPhase() {
  for (auto& slot : slots_) slot.configLink.reset();
  configIo_.reset();
}

void Supervisor::startServing() {
  forked_ = true;
  for (size_t i = 0; i < slots_.size(); ++i) {
    auto& slot = slots_[i];
    KJ_REQUIRE(slot.firstServingSocket != nullptr, "after_fork without a worker");
    auto instance = std::make_shared<WorkerInstance>(
        i, kj::mv(slot.firstProcess), kj::mv(slot.firstServingSocket), std::nullopt,
        setup_.pdb);
    afterFork(*instance, !setup_.fixedWorkerIdentity);
    instance->beginServing(setup_.timeout);
    std::lock_guard<std::mutex> lock(mutex_);
    instances_.push_back(instance);
    slot.current = kj::mv(instance);
  }
  shutdownWatch_ = std::make_unique<ShutdownWatch>(
      SHUTDOWN_GRACE, [this] { return anyCallStalled(); }, [this] { killAllWorkers(); });
  if (setup_.reloadOnChange || setup_.reloadTrigger) {
    reloadWatch_ = std::make_unique<ReloadWatch>(
        setup_.reloadOnChange ? std::optional<std::string>(setup_.script) : std::nullopt,
        setup_.reloadTrigger, [this](const std::string& reason) { reload(reason); },
        scriptAsLoaded_);
  }
}

bool Supervisor::anyCallStalled() {
  std::lock_guard<std::mutex> lock(mutex_);
  auto now = std::chrono::steady_clock::now();
  bool stalled = false;
  for (auto& weak : instances_) {
    if (auto instance = weak.lock(); instance && instance->hasStalledCall(now)) stalled = true;
  }
  return stalled;
}

void Supervisor::killAllWorkers() {
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto& weak : instances_) {
    if (auto instance = weak.lock()) {
      if (!instance->process().hasExited()) {
        nbdkit_error("pyworker: nbdkit is shutting down but worker process %d has not "
                     "finished its requests: killing it",
                     static_cast<int>(instance->pid()));
        instance->process().kill();
      }
    }
  }
}

std::shared_ptr<WorkerInstance> Supervisor::instance(Purpose purpose) {
  // Before the fork a replacement would start an RPC thread in a process about to fork.
  KJ_REQUIRE(forked_, "no serving worker before after_fork");
  std::unique_lock<std::mutex> lock(mutex_);
  // The calls before open (preconnect, list_exports, default_export) go where open will.
  size_t first = (purpose == Purpose::OPEN ? nextSlot_++ : nextSlot_) % slots_.size();
  auto& turn = slots_[first];
  bool turnDead = !turn.current || !turn.current->canServe();
  if (turnDead && !turn.replacing) return replacementFor(turn, lock);
  auto load = [](const std::shared_ptr<WorkerInstance>& instance) {
    return std::make_pair(instance->callsInFlight(), instance->handlesOpen());
  };
  std::shared_ptr<WorkerInstance> best;
  for (size_t i = 0; i < slots_.size(); ++i) {
    auto& candidate = slots_[(first + i) % slots_.size()].current;
    if (!candidate || !candidate->canServe()) continue;
    if (!best || load(candidate) < load(best)) best = candidate;
  }
  // Every worker is dead or starting: wait for this slot's replacement.
  return best ? best : replacementFor(turn, lock);
}

bool Supervisor::isCurrent(const std::shared_ptr<WorkerInstance>& instance) {
  std::lock_guard<std::mutex> lock(mutex_);
  return instance->slot() < slots_.size() && slots_[instance->slot()].current == instance;
}

bool Supervisor::maySpread() const {
  return setup_.spread && slots_.size() > 1 && threadModel_ == NBDKIT_THREAD_MODEL_PARALLEL;
}

std::shared_ptr<WorkerInstance> Supervisor::instanceOfSlot(size_t index) {
  KJ_REQUIRE(forked_ && index < slots_.size(), "no such serving worker");
  std::unique_lock<std::mutex> lock(mutex_);
  auto& slot = slots_[index];
  if (slot.current && slot.current->canServe()) return slot.current;
  return replacementFor(slot, lock);
}

std::shared_ptr<WorkerInstance> Supervisor::replacementFor(Slot& slot,
                                                           std::unique_lock<std::mutex>& lock) {
  // One replacement per slot at a time; other callers wait for it (no longer than timeout=,
  // when given) without holding mutex_, so that the other slots keep serving meanwhile.
  std::optional<std::chrono::steady_clock::time_point> deadline;
  if (setup_.timeout) deadline = std::chrono::steady_clock::now() + *setup_.timeout;
  while (slot.replacing) {
    if (!deadline) {
      slotChanged_.wait(lock);
    } else if (slotChanged_.wait_until(lock, *deadline) == std::cv_status::timeout &&
               slot.replacing) {
      nbdkit_error("pyworker: no worker within timeout=%g seconds: the replacement worker "
                   "is still starting",
                   std::chrono::duration<double>(*setup_.timeout).count());
      throw ScriptFailed();
    }
  }
  if (slot.current && slot.current->canServe()) return slot.current;  // brought up meanwhile
  if (stopping_ || (shutdownWatch_ && shutdownWatch_->shuttingDown())) {
    nbdkit_error("pyworker: nbdkit is shutting down: not starting another worker");
    throw ScriptFailed();
  }

  // A worker that keeps dying (a script that crashes on every request, say) must not become a
  // restart storm: past max-restarts deaths within restart-window, new connections are
  // refused until the oldest death leaves the window.
  const auto window = setup_.restartWindow;
  auto now = std::chrono::steady_clock::now();
  if (slot.current) {
    recentDeaths_.push_back(now);
    slot.current.reset();  // Its connections keep it until they close.
  }
  while (!recentDeaths_.empty() && now - recentDeaths_.front() > window) {
    recentDeaths_.pop_front();
  }
  if (recentDeaths_.size() > setup_.maxRestarts) {
    auto wait = std::chrono::duration_cast<std::chrono::seconds>(
        window - (now - recentDeaths_.front()));
    nbdkit_error("pyworker: %zu workers died within %lld seconds; not starting another for "
                 "%lld seconds",
                 recentDeaths_.size(), static_cast<long long>(window.count()),
                 static_cast<long long>(wait.count()) + 1);
    throw ScriptFailed();
  }

  slot.replacing = true;
  lock.unlock();
  std::shared_ptr<WorkerInstance> replacement;
  try {
    replacement = bringUp(static_cast<size_t>(&slot - slots_.data()), "replacement worker");
  } catch (...) {
    lock.lock();
    // A replacement that cannot be brought up counts as a death too: back-off applies.
    recentDeaths_.push_back(std::chrono::steady_clock::now());
    slot.replacing = false;
    slotChanged_.notify_all();
    throw;
  }
  lock.lock();
  slot.replacing = false;
  slot.current = replacement;
  slotChanged_.notify_all();
  return replacement;
}

std::shared_ptr<WorkerInstance> Supervisor::bringUp(size_t slot, const char* what) {
  auto process = spawn(false, what);
  auto socket = process->takeSockets().serving;
  std::optional<std::chrono::milliseconds> limit;
  // A person may take long: at a debugger before load, or at a breakpoint in config (pdb=on).
  if (!setup_.debugWait && !setup_.pdb) limit = setup_.timeout.value_or(BRING_UP_LIMIT);
  auto instance = std::make_shared<WorkerInstance>(slot, kj::mv(process), kj::mv(socket),
                                                   limit, setup_.pdb);
  {
    // From here on the shutdown watch sees it (and kills it if it holds nbdkit's exit up).
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) throw ScriptFailed();
    std::erase_if(instances_, [](auto& weak) { return weak.expired(); });
    std::erase_if(bringingUp_, [](auto& weak) { return weak.expired(); });
    instances_.push_back(instance);
    bringingUp_.push_back(instance);
  }
  KJ_DEFER({
    std::lock_guard<std::mutex> lock(mutex_);
    std::erase_if(bringingUp_, [&](auto& weak) { return weak.lock() == instance; });
  });
  try {
    loadScript(*instance, setup_, Start::LATER);
    configComplete(*instance);
    int model = threadModel(*instance);
    if (model != threadModel_) {
      nbdkit_error("pyworker: the %s's thread_model (%d) differs from the one nbdkit is using "
                   "(%d)", what, model, threadModel_);
      throw ScriptFailed();
    }
    getReady(*instance);
    afterFork(*instance, !setup_.fixedWorkerIdentity);
  } catch (const CallTimedOut& e) {
    nbdkit_error("pyworker: the %s (process %d) did not finish starting: a step took longer "
                 "than %g seconds; killed it",
                 what, e.pid, e.seconds);
    throw ScriptFailed();
  } catch (const WorkerLost& e) {
    nbdkit_error("pyworker: the %s (process %d) was lost while starting: %s", what,
                 static_cast<int>(e.pid), e.why.c_str());
    throw ScriptFailed();
  }
  instance->beginServing(setup_.timeout);
  return instance;
}

void Supervisor::reload(const std::string& reason) {
  if (shutdownWatch_ && shutdownWatch_->shuttingDown()) return;
  struct stat st;
  std::string modified = "unknown";
  if (stat(setup_.script.c_str(), &st) == 0) {
    char text[64];
    struct tm tm;
    localtime_r(&st.st_mtime, &tm);
    strftime(text, sizeof(text), "%Y-%m-%d %H:%M:%S", &tm);
    modified = text;
  }
  // Brought up outside mutex_: new connections keep going to the current workers meanwhile.
  std::vector<std::shared_ptr<WorkerInstance>> fresh;
  try {
    for (size_t i = 0; i < slots_.size(); ++i) fresh.push_back(bringUp(i, "reloaded worker"));
  } catch (...) {
    nbdkit_error("pyworker: reload of %s (%s, modified %s) failed; the current workers keep "
                 "serving",
                 setup_.script.c_str(), reason.c_str(), modified.c_str());
    return;
  }
  std::string change;
  std::vector<std::shared_ptr<WorkerInstance>> previous;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (size_t i = 0; i < slots_.size(); ++i) {
      auto& slot = slots_[i];
      change += (change.empty() ? "" : ", ") +
                std::to_string(slot.current ? slot.current->pid() : -1) + " -> " +
                std::to_string(fresh[i]->pid());
      previous.push_back(kj::mv(slot.current));
      slot.current = fresh[i];  // The old worker lives on while its connections do.
    }
    slotChanged_.notify_all();
  }
  // Logged as an error so that it reaches the log without -v: a reload is an event an operator
  // wants to see.
  nbdkit_error("pyworker: reloaded %s (%s, modified %s): worker process %s",
               setup_.script.c_str(), reason.c_str(), modified.c_str(), change.c_str());
  // An old worker without connections retires here (its cleanup() and exit), after the log
  // line and without mutex_.
  previous.clear();
}

}  // namespace pyworker
