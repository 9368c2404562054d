#pragma once
// Starting the worker executable: posix_spawn(), or, to start it straight inside its cgroup,
// clone3(CLONE_INTO_CGROUP), which posix_spawn() cannot do (worker-cgroup.h says why that
// matters). Both give the child the same set-up: stdin from /dev/null, the listed fds in place,
// a process group of its own, every signal at its default and none blocked.

#include <sys/types.h>

#include <string>
#include <utility>
#include <vector>

namespace pyworker {

struct SpawnPlan {
  std::string path;
  std::vector<std::string> arguments;  // argv, argv[0] included
  std::vector<std::pair<int, int>> fds;
  // (from, to): `from` is dup2()ed onto `to`, in order; each `from` must be above every `to`
  // (dup2(fd, fd) would leave FD_CLOEXEC set).
};

struct Spawned {
  pid_t pid = -1;
  int pidfd = -1;   // owned by the caller; -1 from posix_spawn (pidfd_open() it)
  bool inCgroup = false;
};

Spawned spawnWorker(const SpawnPlan& plan, int cgroupDirectory);
// Starts the plan; inside `cgroupDirectory` (an open cgroup2 directory, or -1 for none) if the
// kernel lets clone3() do that, else as posix_spawn() would (inCgroup false: the caller moves
// it). Returns once the executable runs; throws kj::Exception (the errno of fork or exec).

}  // namespace pyworker
