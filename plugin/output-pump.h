#pragma once
// Copies what the worker writes on its stdout/stderr (a pipe) to the plugin process's own
// stderr, whatever that is at the time: the terminal in the foreground, /dev/null once nbdkit
// has daemonized (exactly where an in-process script's output would go). The worker never
// holds nbdkit's stdio itself, so a daemonized nbdkit does not keep its caller's pipes open
// through the worker, and under -s nothing of the script's reaches the NBD socket.

#include <kj/async-io.h>

#include <string>

namespace pyworker {

kj::Promise<void> pumpOutput(kj::LowLevelAsyncIoProvider& lowLevel, int pipeFd,
                             std::string prefix);
// Runs on the calling thread's event loop until the pipe ends; `pipeFd` stays owned by the
// caller (the config-phase loop and the serving loop take turns on it). Each line is written
// with `prefix` in front (the worker's identity, e.g. "pyworker[1234]: "), so that a log with
// several workers says which one spoke.

}  // namespace pyworker
