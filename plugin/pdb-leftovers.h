#pragma once
// pdb=on: a worker removes its rendezvous directory (worker/pdb-rendezvous.h) when it exits;
// one that died (SIGKILL, a crash) could not. The plugin removes it once it sees the worker
// gone (the RPC thread's pidfd watch, WorkerProcess::stop).

#include <sys/types.h>

namespace pyworker {

void removePdbLeftovers(pid_t worker);
// Removes $TMPDIR/pyworker-pdb-WORKER-* (else /tmp: the worker's rule) when it is a directory
// of this process's user, and the files in it. Only once the worker has exited.

}  // namespace pyworker
