#include "supervisor.h"

#include <limits.h>
#include <sys/stat.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <kj/debug.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "guard.h"
#include "script-outcome.h"

namespace pyworker {

namespace {

constexpr auto SHUTDOWN_GRACE = std::chrono::seconds(2);
// How long nbdkit's shutdown may wait for callbacks in flight before their workers are killed.

std::string baseName(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string currentDirectory() {
  char buffer[PATH_MAX];
  if (getcwd(buffer, sizeof(buffer)) == nullptr) {
    KJ_FAIL_SYSCALL("getcwd", errno);
  }
  return buffer;
}

Supervisor* current = nullptr;
// For reportFault(), which is called from guarded() with no context of its own.

template <typename Request>
void runStatusCall(WorkerLink& link, Request&& makeRequest) {
  ScriptOutcome outcome;
  link.run([&](rpc::Worker::Client& worker) {
    return makeRequest(worker).send().then(
        [&](auto response) { outcome = ScriptOutcome::from(response.getStatus()); });
  });
  if (!outcome.report()) throw ScriptFailed();
}

}  // namespace

void reportFault(const char* callback, const kj::Exception& e) {
  if (e.getType() == kj::Exception::Type::DISCONNECTED) {
    pid_t pid = workerOfLastCall();
    if (pid <= 0 && current) pid = current->workerPid();
    nbdkit_error("pyworker: %s: lost the worker process (pid %d) during this request",
                 callback, static_cast<int>(pid));
    // The connection's handle died with its worker: every later request would fail too.
    // Where nbdkit can end the connection (1.34+) it does; on 1.32 they fail with EIO.
    disconnectClient(true);
  } else {
    nbdkit_error("pyworker: %s: %s", callback, e.getDescription().cStr());
  }
}

WorkerInstance::WorkerInstance(std::unique_ptr<WorkerProcess> process,
                               kj::AutoCloseFd servingSocket)
    : process_(kj::mv(process)), link_(kj::mv(servingSocket), *process_) {}

void WorkerInstance::stop() {
  link_.stop();
  process_->stop(3 * kj::SECONDS);
}

WorkerInstance::~WorkerInstance() noexcept {
  // link_ is destroyed after this body; stop the process only after the RPC thread is gone
  // so that the thread does not report a deliberate stop as a death.
}

Supervisor::Supervisor(WorkerSetup setup) : setup_(kj::mv(setup)) {
  current = this;
  slots_.resize(std::max(1u, setup_.workers));
}

Supervisor::~Supervisor() noexcept {
  reloadWatch_.reset();
  shutdownWatch_.reset();
  std::vector<std::shared_ptr<WorkerInstance>> remaining;
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
  if (current == this) current = nullptr;
}

std::unique_ptr<WorkerProcess> Supervisor::spawn(bool withConfigSocket, const char* what) {
  auto process = std::make_unique<WorkerProcess>(setup_.workerPath, baseName(setup_.script),
                                                 withConfigSocket, setup_.memoryLimit);
  int pid = static_cast<int>(process->pid());
  nbdkit_debug("pyworker: started %s process %d for %s", what, pid, setup_.script.c_str());
  if (setup_.debugWait) {
    // Said on stderr as well: without -v nbdkit_debug() is silent, and this is for a person.
    fprintf(stderr,
            "nbdkit: pyworker: debug-wait: %s process %d waits for a debugger before it loads "
            "%s:\n  gdb -p %d   (set breakpoints, then 'continue')\n",
            what, pid, setup_.script.c_str(), pid);
    fflush(stderr);
  }
  return process;
}

void Supervisor::configure(WorkerLink& link) {
  ScriptOutcome outcome;
  std::string printed;
  int exitStatus = -1;
  link.run([&](rpc::Worker::Client& worker) {
    auto request = worker.loadRequest();
    request.setScript(setup_.script);
    request.setDebugWait(setup_.debugWait);
    request.setHost(link.host());
    return request.send().then([&](auto response) {
      outcome = ScriptOutcome::from(response.getStatus());
      printed = response.getPrinted();
      exitStatus = response.getExitStatus();
      auto info = response.getInfo();
      info_.apiVersion = info.getApiVersion();
      info_.pythonVersion = info.getPythonVersion();
      info_.pep384AbiVersion = info.getPep384AbiVersion();
    });
  });
  // Python's own output comes first (the traceback), then nbdkit's line, as in-process.
  if (!printed.empty()) {
    fputs(printed.c_str(), stderr);
    fflush(stderr);
  }
  if (exitStatus >= 0 && configIo_) {
    // sys.exit(n) while nbdkit starts: nbdkit python's process exits with n, at once. (In a
    // replacement worker, nbdkit serving already, it is a failed load like any other.)
    exit(exitStatus & 0xff);
  }
  if (!outcome.report()) throw ScriptFailed();

  for (auto& [key, value] : setup_.scriptConfig) {
    runStatusCall(link, [&](rpc::Worker::Client& worker) {
      auto request = worker.configRequest();
      request.setKey(key);
      request.setValue(value);
      return request;
    });
  }
}

const ScriptInfo& Supervisor::start() {
  configIo_ = std::make_unique<kj::AsyncIoContext>(kj::setupAsyncIo());
  for (auto& slot : slots_) {
    slot.firstProcess = spawn(true, "worker");
    auto sockets = slot.firstProcess->takeSockets();
    slot.firstServingSocket = kj::mv(sockets.serving);
    slot.configLink = std::make_unique<ConfigPhaseLink>(
        *configIo_, kj::mv(sockets.config), slot.firstProcess->outputFd(),
        slot.firstProcess->identity());
    configure(*slot.configLink);
  }
  return info_;
}

void Supervisor::forEachWorker(const std::function<void(WorkerLink&)>& call) {
  if (!forked_) {
    for (auto& slot : slots_) call(*slot.configLink);
    return;
  }
  std::vector<std::shared_ptr<WorkerInstance>> live;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& slot : slots_) {
      if (slot.current && !slot.current->isBroken()) live.push_back(slot.current);
    }
  }
  for (auto& instance : live) call(instance->link());
}

WorkerLink& Supervisor::link() {
  // After the fork a link is only safe to use with its WorkerInstance held: firstInstance().
  KJ_REQUIRE(!forked_, "the config-phase link is gone after the fork");
  return *slots_.front().configLink;
}

void Supervisor::endConfigPhase() {
  for (auto& slot : slots_) slot.configLink.reset();
  configIo_.reset();
}

void Supervisor::finishConfiguring(ServingLink& link, WorkerProcess& process) {
  auto directory = currentDirectory();
  runStatusCall(link, [&](rpc::Worker::Client& worker) {
    auto request = worker.afterForkRequest();
    request.setDirectory(directory);
    request.setHost(link.host());
    request.setNbdkitPid(getpid());
    // nbdkit -u/-g switched user between this worker's start and now.
    if (geteuid() != process.uid()) request.setUid(geteuid());
    if (getegid() != process.gid()) request.setGid(getegid());
    return request;
  });
  link.armTimeout(setup_.timeout);
}

void Supervisor::startServing() {
  forked_ = true;
  for (auto& slot : slots_) {
    KJ_REQUIRE(slot.firstServingSocket != nullptr, "after_fork without a worker");
    auto instance = std::make_shared<WorkerInstance>(kj::mv(slot.firstProcess),
                                                     kj::mv(slot.firstServingSocket));
    finishConfiguring(instance->link(), instance->process());
    std::lock_guard<std::mutex> lock(mutex_);
    instances_.push_back(instance);
    slot.current = kj::mv(instance);
  }
  shutdownWatch_ = std::make_unique<ShutdownWatch>(
      SHUTDOWN_GRACE, [this] { return anyCallStalled(); }, [this] { killAllWorkers(); });
  if (setup_.reloadOnChange || setup_.reloadTrigger) {
    reloadWatch_ = std::make_unique<ReloadWatch>(
        setup_.reloadOnChange ? std::optional<std::string>(setup_.script) : std::nullopt,
        setup_.reloadTrigger, [this](const std::string& reason) { reload(reason); });
  }
}

bool WorkerInstance::hasStalledCall() {
  auto now = link_.progress();
  bool stalled = now.started > now.finished && now.finished == lastSeen_.finished &&
                 lastSeen_.started > lastSeen_.finished;
  lastSeen_ = now;
  return stalled;
}

bool Supervisor::anyCallStalled() {
  std::lock_guard<std::mutex> lock(mutex_);
  bool stalled = false;
  for (auto& weak : instances_) {
    if (auto instance = weak.lock(); instance && instance->hasStalledCall()) stalled = true;
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
                     static_cast<int>(instance->process().pid()));
        instance->process().kill();
      }
    }
  }
}

std::shared_ptr<WorkerInstance> Supervisor::firstInstance() {
  // Before the fork a replacement would start an RPC thread in a process about to fork.
  KJ_REQUIRE(forked_, "no serving worker before after_fork");
  std::lock_guard<std::mutex> lock(mutex_);
  return instanceOf(slots_.front());
}

std::shared_ptr<WorkerInstance> Supervisor::instance() {
  KJ_REQUIRE(forked_, "no serving worker before after_fork");
  std::lock_guard<std::mutex> lock(mutex_);
  return instanceOf(slots_[nextSlot_++ % slots_.size()]);
}

std::shared_ptr<WorkerInstance> Supervisor::instanceOf(Slot& slot) {
  // hasExited() as well: a worker that died a moment ago may not have been noticed by its RPC
  // thread yet, and a connection given to it would be refused.
  if (slot.current && !slot.current->isBroken() && !slot.current->process().hasExited()) {
    return slot.current;
  }
  if (shutdownWatch_ && shutdownWatch_->shuttingDown()) {
    nbdkit_error("pyworker: nbdkit is shutting down: not starting another worker");
    throw ScriptFailed();
  }
  return replaceWorker(slot);
}

std::shared_ptr<WorkerInstance> Supervisor::replaceWorker(Slot& slot) {
  // With mutex_ held: one replacement at a time, other new connections wait for it. A worker
  // that keeps dying (a script that crashes on every request, say) must not become a restart
  // storm: past max-restarts deaths within restart-window, new connections are refused until
  // the oldest death leaves the window.
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

  std::shared_ptr<WorkerInstance> instance;
  try {
    instance = startConfiguredWorker("replacement worker");
  } catch (...) {
    // A replacement that cannot be configured counts as a death too: back-off applies.
    recentDeaths_.push_back(std::chrono::steady_clock::now());
    throw;
  }
  std::erase_if(instances_, [](auto& weak) { return weak.expired(); });
  instances_.push_back(instance);
  slot.current = instance;
  return instance;
}

std::shared_ptr<WorkerInstance> Supervisor::startConfiguredWorker(const char* what) {
  auto process = spawn(false, what);
  auto socket = process->takeSockets().serving;
  auto instance = std::make_shared<WorkerInstance>(kj::mv(process), kj::mv(socket));
  auto& link = instance->link();
  configure(link);
  runStatusCall(link, [](rpc::Worker::Client& w) { return w.configCompleteRequest(); });
  int model = -1;
  link.run([&](rpc::Worker::Client& worker) {
    return worker.threadModelRequest().send().then(
        [&](auto response) { model = response.getModel(); });
  });
  if (model != threadModel_) {
    nbdkit_error("pyworker: the %s's thread_model (%d) differs from the one nbdkit is using "
                 "(%d)", what, model, threadModel_);
    throw ScriptFailed();
  }
  runStatusCall(link, [](rpc::Worker::Client& w) { return w.getReadyRequest(); });
  finishConfiguring(link, instance->process());
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
  // Configured outside mutex_: new connections keep going to the current workers meanwhile.
  std::vector<std::shared_ptr<WorkerInstance>> fresh;
  try {
    for (size_t i = 0; i < slots_.size(); ++i) fresh.push_back(startConfiguredWorker("reloaded worker"));
  } catch (...) {
    nbdkit_error("pyworker: reload of %s (%s, modified %s) failed; the current workers keep "
                 "serving",
                 setup_.script.c_str(), reason.c_str(), modified.c_str());
    return;
  }
  std::string change;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (size_t i = 0; i < slots_.size(); ++i) {
      auto& slot = slots_[i];
      change += (change.empty() ? "" : ", ") +
                std::to_string(slot.current ? slot.current->process().pid() : -1) + " -> " +
                std::to_string(fresh[i]->process().pid());
      slot.current = fresh[i];  // The old worker lives on while its connections do.
      instances_.push_back(fresh[i]);
    }
    std::erase_if(instances_, [](auto& weak) { return weak.expired(); });
  }
  // Logged as an error so that it reaches the log without -v: a reload is an event an operator
  // wants to see.
  nbdkit_error("pyworker: reloaded %s (%s, modified %s): worker process %s",
               setup_.script.c_str(), reason.c_str(), modified.c_str(), change.c_str());
}

pid_t Supervisor::workerPid() {
  if (!forked_) return slots_.front().firstProcess ? slots_.front().firstProcess->pid() : -1;
  std::lock_guard<std::mutex> lock(mutex_);
  return slots_.front().current ? slots_.front().current->process().pid() : -1;
}

}  // namespace pyworker
