#pragma once
// A cgroup (v2) of one worker: the strong way to end everything its script started. Whatever a
// process does (setsid(), double forks, a new process group), it stays in the cgroup of the
// process that forked it, and cgroup.kill (Linux >= 5.14) ends every process in it at once.
// This covers what the worker's subreaper and process group cannot: a setsid() daemon of a
// worker that dies by itself. Needs a writable cgroup2 hierarchy (root, or a delegated
// subtree); where there is none, the worker runs without one and the weaker mechanisms remain
// (worker-process.h says so with -v).

#include <sys/types.h>

#include <kj/io.h>

#include <atomic>
#include <optional>
#include <string>

namespace pyworker {

class WorkerCgroup {
public:
  static std::optional<WorkerCgroup> prepare(std::string& whyNot);
  // A new, empty cgroup below nbdkit's own in the cgroup2 hierarchy, named
  // pyworker-NBDKITPID-N (N counts this process's workers), for a worker about to be started
  // in it (spawnWorker() with directory()). Empty cgroups left by an nbdkit that was killed are
  // removed on the way. nullopt, with the reason in `whyNot`, when that cannot be done.
  // Why start the worker in it rather than move it there: a move waits for an RCU grace
  // period (cgroup_threadgroup_rwsem taken for writing), measured at 5-17 ms here, a third of
  // nbdkit's start-up; clone3(CLONE_INTO_CGROUP) takes it only for reading.

  bool adopt(pid_t worker, std::string& whyNot);
  // Moves `worker` into the cgroup, for a worker that could not be started in it (a kernel
  // or a container's seccomp profile without clone3). Call before it has run anything of the
  // script. False, with the reason in `whyNot`, when that cannot be done.

  int directory() const { return directory_.get(); }
  // The cgroup's directory, open, for clone3's CLONE_INTO_CGROUP.

  WorkerCgroup(WorkerCgroup&& other) noexcept;
  WorkerCgroup& operator=(WorkerCgroup&&) = delete;
  WorkerCgroup(const WorkerCgroup&) = delete;
  ~WorkerCgroup() { remove(); }

  bool killAll();
  // SIGKILL to every process in the cgroup, the worker included if it still lives. False if
  // that could not be done (removed already, or nbdkit has switched to a user (-u) that may
  // not write to the cgroup it made as root).

  void remove();
  // killAll(), then the cgroup is removed once empty (waiting up to about a second).
  // Idempotent; not concurrently with itself.

  const std::string& path() const { return path_; }

private:
  WorkerCgroup(std::string path, kj::AutoCloseFd directory)
      : path_(std::move(path)), directory_(std::move(directory)) {}
  std::string path_;
  kj::AutoCloseFd directory_;
  std::atomic<bool> removed_ = false;  // or moved from
};

std::optional<std::string> cgroup2Directory(std::string& whyNot);
// This process's own cgroup in the cgroup2 hierarchy (e.g. /sys/fs/cgroup/unified/ or
// /sys/fs/cgroup/system.slice/nbdkit.service), from /proc/self/mountinfo and /proc/self/cgroup.

}  // namespace pyworker
