#include "supervisor.h"

#include <limits.h>
#include <unistd.h>

#include <kj/debug.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "guard.h"
#include "script-outcome.h"

namespace pyworker {

namespace {

std::string baseName(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string currentDirectory() {
  char buffer[PATH_MAX];
  KJ_SYSCALL(getcwd(buffer, sizeof(buffer)) == nullptr ? -1 : 0);
  return buffer;
}

Supervisor* current = nullptr;
// For reportFault(), which is called from guarded() with no context of its own.

}  // namespace

void reportFault(const char* callback, const kj::Exception& e) {
  if (e.getType() == kj::Exception::Type::DISCONNECTED) {
    nbdkit_error("pyworker: %s: lost the worker process (pid %d): %s", callback,
                 current ? static_cast<int>(current->workerPid()) : -1,
                 e.getDescription().cStr());
  } else {
    nbdkit_error("pyworker: %s: %s", callback, e.getDescription().cStr());
  }
}

Supervisor::Supervisor(WorkerSetup setup) : setup_(kj::mv(setup)) { current = this; }

Supervisor::~Supervisor() noexcept {
  servingLink_.reset();
  configLink_.reset();
  servingSocket_ = nullptr;
  process_.reset();
  if (current == this) current = nullptr;
}

const ScriptInfo& Supervisor::start() {
  process_ = std::make_unique<WorkerProcess>(setup_.workerPath, baseName(setup_.script), true);
  nbdkit_debug("pyworker: started worker process %d for %s", static_cast<int>(process_->pid()),
               setup_.script.c_str());
  auto sockets = process_->takeSockets();
  servingSocket_ = kj::mv(sockets.serving);
  configLink_ = std::make_unique<ConfigPhaseLink>(kj::mv(sockets.config));

  ScriptOutcome outcome;
  configLink_->run([&](rpc::Worker::Client& worker) {
    auto request = worker.loadRequest();
    request.setScript(setup_.script);
    request.setHost(configLink_->host());
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
    configLink_->run([&](rpc::Worker::Client& worker) {
      auto request = worker.configRequest();
      request.setKey(key);
      request.setValue(value);
      return request.send().then(
          [&](auto response) { outcome = ScriptOutcome::from(response.getStatus()); });
    });
    if (!outcome.report()) throw ScriptFailed();
  }
  return info_;
}

WorkerLink& Supervisor::link() {
  if (servingLink_) return *servingLink_;
  if (configLink_) return *configLink_;
  KJ_FAIL_REQUIRE("no worker is running");
}

void Supervisor::endConfigPhase() { configLink_.reset(); }

void Supervisor::startServing() {
  KJ_REQUIRE(servingSocket_ != nullptr, "after_fork without a worker");
  servingLink_ = std::make_unique<ServingLink>(kj::mv(servingSocket_));
  auto directory = currentDirectory();
  ScriptOutcome outcome;
  servingLink_->run([&](rpc::Worker::Client& worker) {
    auto request = worker.afterForkRequest();
    request.setDirectory(directory);
    request.setHost(servingLink_->host());
    return request.send().then(
        [&](auto response) { outcome = ScriptOutcome::from(response.getStatus()); });
  });
  if (!outcome.report()) throw ScriptFailed();
}

pid_t Supervisor::workerPid() const { return process_ ? process_->pid() : -1; }

}  // namespace pyworker
