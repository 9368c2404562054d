#include "supervisor.h"

#include <limits.h>
#include <stdio.h>
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
    nbdkit_error("pyworker: %s: lost the worker process (pid %d) during this request",
                 callback, current ? static_cast<int>(current->workerPid()) : -1);
  } else {
    nbdkit_error("pyworker: %s: %s", callback, e.getDescription().cStr());
  }
}

WorkerInstance::WorkerInstance(std::unique_ptr<WorkerProcess> process,
                               kj::AutoCloseFd servingSocket)
    : process_(kj::mv(process)), link_(kj::mv(servingSocket), *process_) {}

WorkerInstance::~WorkerInstance() noexcept {
  // link_ is destroyed after this body; stop the process only after the RPC thread is gone
  // so that the thread does not report a deliberate stop as a death.
}

Supervisor::Supervisor(WorkerSetup setup) : setup_(kj::mv(setup)) { current = this; }

Supervisor::~Supervisor() noexcept {
  shutdownWatch_.reset();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    current_.reset();
  }
  configLink_.reset();
  firstServingSocket_ = nullptr;
  firstProcess_.reset();
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
  link.run([&](rpc::Worker::Client& worker) {
    auto request = worker.loadRequest();
    request.setScript(setup_.script);
    request.setDebugWait(setup_.debugWait);
    request.setHost(link.host());
    return request.send().then([&](auto response) {
      outcome = ScriptOutcome::from(response.getStatus());
      auto info = response.getInfo();
      info_.apiVersion = info.getApiVersion();
      info_.pythonVersion = info.getPythonVersion();
      info_.pep384AbiVersion = info.getPep384AbiVersion();
    });
  });
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
  firstProcess_ = spawn(true, "worker");
  auto sockets = firstProcess_->takeSockets();
  firstServingSocket_ = kj::mv(sockets.serving);
  configLink_ = std::make_unique<ConfigPhaseLink>(kj::mv(sockets.config),
                                                  firstProcess_->outputFd());
  configure(*configLink_);
  return info_;
}

WorkerLink& Supervisor::link() {
  if (configLink_) return *configLink_;
  return instance()->link();
}

void Supervisor::endConfigPhase() { configLink_.reset(); }

void Supervisor::startServing() {
  KJ_REQUIRE(firstServingSocket_ != nullptr, "after_fork without a worker");
  auto instance =
      std::make_shared<WorkerInstance>(kj::mv(firstProcess_), kj::mv(firstServingSocket_));
  auto directory = currentDirectory();
  auto& process = instance->process();
  runStatusCall(instance->link(), [&](rpc::Worker::Client& worker) {
    auto request = worker.afterForkRequest();
    request.setDirectory(directory);
    request.setHost(instance->link().host());
    // nbdkit -u/-g switched user between this worker's start and now.
    if (geteuid() != process.uid()) request.setUid(geteuid());
    if (getegid() != process.gid()) request.setGid(getegid());
    return request;
  });
  instance->link().armTimeout(setup_.timeout);
  std::lock_guard<std::mutex> lock(mutex_);
  instances_.push_back(instance);
  current_ = kj::mv(instance);
  shutdownWatch_ = std::make_unique<ShutdownWatch>(
      SHUTDOWN_GRACE, [this] { return anyWorkerBusy(); }, [this] { killAllWorkers(); });
}

bool Supervisor::anyWorkerBusy() {
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto& weak : instances_) {
    if (auto instance = weak.lock(); instance && instance->isBusy()) return true;
  }
  return false;
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

std::shared_ptr<WorkerInstance> Supervisor::healthyInstance() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (current_ && !current_->isBroken()) return current_;
  return nullptr;
}

std::shared_ptr<WorkerInstance> Supervisor::instance() {
  std::lock_guard<std::mutex> lock(mutex_);
  KJ_REQUIRE(current_ != nullptr || !recentDeaths_.empty(), "no worker is running");
  if (current_ && !current_->isBroken()) return current_;
  if (shutdownWatch_ && shutdownWatch_->shuttingDown()) {
    nbdkit_error("pyworker: nbdkit is shutting down: not starting another worker");
    throw ScriptFailed();
  }
  return replaceWorker();
}

std::shared_ptr<WorkerInstance> Supervisor::replaceWorker() {
  // With mutex_ held: one replacement at a time, other new connections wait for it. A worker
  // that keeps dying (a script that crashes on every request, say) must not become a restart
  // storm: past max-restarts deaths within restart-window, new connections are refused until
  // the oldest death leaves the window.
  const auto window = setup_.restartWindow;
  auto now = std::chrono::steady_clock::now();
  if (current_) {
    recentDeaths_.push_back(now);
    current_.reset();  // Its connections keep it until they close.
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

  auto process = spawn(false, "replacement worker");
  auto socket = process->takeSockets().serving;
  auto instance = std::make_shared<WorkerInstance>(kj::mv(process), kj::mv(socket));
  auto& link = instance->link();
  try {
    configure(link);
    runStatusCall(link, [](rpc::Worker::Client& w) { return w.configCompleteRequest(); });
    int model = -1;
    link.run([&](rpc::Worker::Client& worker) {
      return worker.threadModelRequest().send().then(
          [&](auto response) { model = response.getModel(); });
    });
    if (model != threadModel_) {
      nbdkit_error("pyworker: the replacement worker's thread_model (%d) differs from the "
                   "one nbdkit is using (%d)", model, threadModel_);
      throw ScriptFailed();
    }
    runStatusCall(link, [](rpc::Worker::Client& w) { return w.getReadyRequest(); });
    auto directory = currentDirectory();
    runStatusCall(link, [&](rpc::Worker::Client& worker) {
      auto request = worker.afterForkRequest();
      request.setDirectory(directory);
      request.setHost(link.host());
      return request;
    });
  } catch (...) {
    // A replacement that cannot be configured counts as a death too: back-off applies.
    recentDeaths_.push_back(std::chrono::steady_clock::now());
    throw;
  }
  link.armTimeout(setup_.timeout);
  std::erase_if(instances_, [](auto& weak) { return weak.expired(); });
  instances_.push_back(instance);
  current_ = instance;
  return instance;
}

pid_t Supervisor::workerPid() {
  if (firstProcess_) return firstProcess_->pid();
  std::lock_guard<std::mutex> lock(mutex_);
  return current_ ? current_->process().pid() : -1;
}

}  // namespace pyworker
