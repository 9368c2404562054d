#include "bring-up.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <kj/debug.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "guard.h"
#include "reply-checks.h"
#include "worker-instance.h"

namespace pyworker {

namespace {

std::string currentDirectory() {
  char buffer[PATH_MAX];
  if (getcwd(buffer, sizeof(buffer)) == nullptr) {
    KJ_FAIL_SYSCALL("getcwd", errno);
  }
  return buffer;
}

void require(bool succeeded) {
  if (!succeeded) throw ScriptFailed();
}

}  // namespace

ScriptInfo loadScript(WorkerLink& link, const WorkerSetup& setup, Start start) {
  ScriptOutcome outcome;
  ScriptInfo info;
  std::string printed;
  int exitStatus = -1;
  link.run([&](rpc::Worker::Client& worker) {
    auto request = worker.loadRequest();
    request.setScript(setup.script);
    request.setDebugWait(setup.debugWait);
    request.setPdb(setup.pdb);
    request.setHost(link.host());
    return request.send().then([&](auto response) {
      outcome = ScriptOutcome::from(response.getStatus());
      printed = response.getPrinted();
      exitStatus = response.getExitStatus();
      auto reply = response.getInfo();
      info.apiVersion = reply.getApiVersion();
      info.pythonVersion = reply.getPythonVersion();
      info.pep384AbiVersion = reply.getPep384AbiVersion();
    });
  });
  // Python's own output comes first (the traceback), then nbdkit's line, as in-process.
  if (!printed.empty()) {
    fputs(printed.c_str(), stderr);
    fflush(stderr);
  }
  if (exitStatus >= 0 && start == Start::NBDKIT) {
    // sys.exit(n) while nbdkit starts: nbdkit python's process exits with n, at once.
    exit(exitStatus & 0xff);
  }
  require(outcome.report());

  for (auto& [key, value] : setup.scriptConfig) {
    try {
      require(runStatusCall(link, [&](rpc::Worker::Client& worker) {
        auto request = worker.configRequest();
        request.setKey(key);
        request.setValue(value);
        return request;
      }));
    } catch (const WorkerLost& e) {
      // Said here: nbdkit runs config_complete when we learn of it, but it was config().
      nbdkit_error("pyworker: config: lost the worker process (pid %d, %s) while the script's "
                   "config() ran with %s=%s",
                   static_cast<int>(e.pid), e.why.c_str(), key.c_str(), value.c_str());
      throw ScriptFailed();
    }
  }
  return info;
}

void configComplete(WorkerLink& link) {
  require(runStatusCall(link, [](rpc::Worker::Client& w) { return w.configCompleteRequest(); }));
}

void getReady(WorkerLink& link) {
  require(runStatusCall(link, [](rpc::Worker::Client& w) { return w.getReadyRequest(); }));
}

int32_t threadModel(WorkerLink& link) {
  ScriptOutcome outcome;
  int32_t model = 0;
  link.run([&](rpc::Worker::Client& worker) {
    return worker.threadModelRequest().send().then([&](auto response) {
      outcome = ScriptOutcome::from(response.getStatus());
      model = response.getModel();
    });
  });
  require(outcome.report());
  checkThreadModel(model);
  return model;
}

void afterFork(WorkerInstance& instance, bool followUserSwitch) {
  auto directory = currentDirectory();
  auto& process = instance.process();
  ScriptOutcome outcome;
  WorkerInstance::ScriptFacts defines;
  instance.run([&](rpc::Worker::Client& worker) {
    auto request = worker.afterForkRequest();
    request.setDirectory(directory);
    request.setHost(instance.host());
    request.setNbdkitPid(getpid());
    // nbdkit -u/-g switched user between this worker's start and now.
    if (followUserSwitch && geteuid() != process.uid()) request.setUid(geteuid());
    if (followUserSwitch && getegid() != process.gid()) request.setGid(getegid());
    return request.send().then([&](auto response) {
      outcome = ScriptOutcome::from(response.getStatus());
      auto said = response.getDefines();
      defines = {said.getPreconnect(), said.getListExports(), said.getDefaultExport(),
                 said.getBlockSize(), said.getExportDescription()};
      auto answers = response.getFixedAnswers();
      for (size_t i = 0; i < answers.size() && i < defines.fixedAnswers.size(); ++i) {
        defines.fixedAnswers[i] = answers[i];
      }
    });
  });
  require(outcome.report());
  instance.setScriptFacts(defines);
}

}  // namespace pyworker
