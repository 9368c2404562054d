#include "script-outcome.h"

#include "reply-checks.h"

#include <dlfcn.h>
#include <errno.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

namespace pyworker {

namespace {

constexpr size_t MAX_RELAYED_ERRORS = 16;
// A script calling export_name() in a loop must not flood nbdkit's log from one call.

using DisconnectFunction = void (*)(int force);

DisconnectFunction nbdkitDisconnect() {
  // nbdkit_disconnect() appeared in nbdkit 1.34; looked up at run time so that the plugin
  // still loads into 1.32, where a script's disconnect request can only be logged.
  static DisconnectFunction function =
      reinterpret_cast<DisconnectFunction>(dlsym(RTLD_DEFAULT, "nbdkit_disconnect"));
  return function;
}

}  // namespace

bool disconnectClient(bool force) {
  auto function = nbdkitDisconnect();
  if (function) function(force);
  return function != nullptr;
}

ScriptOutcome ScriptOutcome::from(rpc::Status::Reader status) {
  ScriptOutcome outcome;
  int error = status.getErrno();
  if (error != 0) {
    outcome.error = errnoFromReply(error);
    auto message = status.getMessage();
    outcome.message.assign(message.begin(), message.size());
    // An EOPNOTSUPP without a message is zero's request to fall back to writing zeroes,
    // which nbdkit python makes silently.
    bool fallback = error == EOPNOTSUPP || error == ENOTSUP;
    if (outcome.message.empty() && !fallback) outcome.message = "script callback failed";
  }
  outcome.disconnect = status.getDisconnect();
  // Untrusted: a few, each bounded by the message's own limits.
  size_t kept = 0;
  for (auto text : status.getErrors()) {
    if (++kept > MAX_RELAYED_ERRORS) break;
    outcome.errors.emplace_back(text.begin(), text.size());
  }
  return outcome;
}

bool ScriptOutcome::report() const {
  for (auto& text : errors) nbdkit_error("%s", text.c_str());
  if (disconnect != rpc::Disconnect::NONE) {
    bool force = disconnect == rpc::Disconnect::FORCE;
    if (!disconnectClient(force)) {
      nbdkit_debug("pyworker: nbdkit.disconnect(%s) needs nbdkit >= 1.34; ignored",
                   force ? "True" : "False");
    }
  }
  if (error == 0) return true;
  if (!message.empty()) nbdkit_error("%s", message.c_str());
  nbdkit_set_error(error);
  return false;
}

}  // namespace pyworker
