#pragma once
// The one place where C++ exceptions stop: every nbdkit callback body runs inside guarded(), so
// no exception ever unwinds into nbdkit's C. A fault becomes nbdkit_error + EIO + failure value.

#include <errno.h>

#include <chrono>
#include <exception>

#include <kj/exception.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "parameters.h"
#include "worker-lost.h"

namespace pyworker {

struct ScriptFailed {
  // The script's own failure, already reported to nbdkit (ScriptOutcome::report()): the
  // callback just returns its failure value.
};

struct CallTimedOut {
  // A callback ran past timeout=; its worker has been killed.
  double seconds;
  int pid;
};

struct LaneRefused {
  // A live worker closed the request's lane without answering: what a correct worker does
  // when it has no memory left for the lane (worker/lane-server.c++ logs it there). The
  // request fails with ENOMEM; the worker serves on.
  int pid;
};

extern "C" int pyworker_debug_trace;
// nbdkit -v -D pyworker.trace=1: log how long each forwarded callback took (nbdkit -v already
// logs each callback's name and arguments as it starts).

class CallTrace {
public:
  explicit CallTrace(const char* callback)
      : callback_(callback), start_(std::chrono::steady_clock::now()) {}
  ~CallTrace() {
    auto elapsed = std::chrono::duration<double, std::micro>(
        std::chrono::steady_clock::now() - start_);
    nbdkit_debug("pyworker: %s: %.0f us", callback_, elapsed.count());
  }
  CallTrace(const CallTrace&) = delete;
  CallTrace& operator=(const CallTrace&) = delete;

private:
  const char* callback_;
  std::chrono::steady_clock::time_point start_;
};

template <typename T, typename Body>
T guarded(const char* callback, T failure, Body&& body) noexcept {
  try {
    if (pyworker_debug_trace) {
      CallTrace trace(callback);
      return body();
    }
    return body();
  } catch (const ScriptFailed&) {
  } catch (const CallTimedOut& e) {
    nbdkit_error("pyworker: %s: no reply within timeout=%g seconds: killed worker process %d",
                 callback, e.seconds, e.pid);
    // NBD has no ETIMEDOUT (nbdkit would send EINVAL, a client error): EIO, as for a crash.
    nbdkit_set_error(EIO);
  } catch (const WorkerLost& e) {
    nbdkit_error("pyworker: %s: lost the worker process (pid %d, %s) during this request",
                 callback, static_cast<int>(e.pid), e.why.c_str());
    nbdkit_set_error(EIO);
  } catch (const LaneRefused& e) {
    nbdkit_error("pyworker: %s: worker process %d closed the request's lane without "
                 "answering (out of memory for it? memory= may be too small)",
                 callback, e.pid);
    nbdkit_set_error(ENOMEM);
  } catch (const ParameterError& e) {
    nbdkit_error("%s", e.what());
    nbdkit_set_error(EINVAL);
  } catch (const kj::Exception& e) {
    nbdkit_error("pyworker: %s: %s", callback, e.getDescription().cStr());
    nbdkit_set_error(EIO);
  } catch (const std::exception& e) {
    nbdkit_error("pyworker: %s: %s", callback, e.what());
    nbdkit_set_error(EIO);
  } catch (...) {
    nbdkit_error("pyworker: %s: unknown exception", callback);
    nbdkit_set_error(EIO);
  }
  return failure;
}

}  // namespace pyworker
