#pragma once
// The steps nbdkit takes a plugin through before it serves, as a worker must see them: load
// and config keys, config_complete, thread_model, get_ready, after_fork. The first workers take
// them one nbdkit callback at a time (plugin.c++); a replacement or reloaded worker takes them
// all at once (Supervisor). Both run these functions, so both honour every Status the same
// way: a script failure is reported with its traceback and throws ScriptFailed.

#include <cstdint>

#include "script-outcome.h"
#include "worker-link.h"
#include "worker-setup.h"

namespace pyworker {

class WorkerInstance;

struct ScriptFailed;

template <typename Request>
bool runStatusCall(WorkerLink& link, Request&& makeRequest) {
  // Sends a Worker request that carries only a Status back, and applies it (reports a
  // failure). Returns whether the script succeeded.
  ScriptOutcome outcome;
  link.run([&](rpc::Worker::Client& worker) {
    return makeRequest(worker).send().then(
        [&](auto response) { outcome = ScriptOutcome::from(response.getStatus()); });
  });
  return outcome.report();
}

enum class Start {
  NBDKIT,  // a first worker, while nbdkit starts
  LATER,   // a replacement or reloaded worker, while nbdkit serves
};

ScriptInfo loadScript(WorkerLink& link, const WorkerSetup& setup, Start start);
// load, then every config key in order. Throws ScriptFailed (reported). A script that calls
// sys.exit(n) at load while nbdkit starts makes nbdkit exit with n, as in-process; later it
// is a failed load like any other.

void configComplete(WorkerLink& link);
void getReady(WorkerLink& link);
// Throw ScriptFailed (reported).

int32_t threadModel(WorkerLink& link);
// The script's thread model. Throws ScriptFailed (reported) or BadReply (an impossible value).

void afterFork(WorkerInstance& instance, bool followUserSwitch);
// after_fork in the worker: the daemon's directory, its pid, and any -u/-g switch (unless
// `followUserSwitch` is false: worker-user= fixed the worker's identity).

}  // namespace pyworker
