#pragma once
// One worker process: spawned with posix_spawn (nbdkit is multithreaded, so nothing but exec
// may run in the child), joined to the plugin by socketpairs, stopped and reaped by its owner.

#include <sys/types.h>

#include <kj/io.h>
#include <kj/string.h>
#include <kj/time.h>

#include <cstdint>
#include <mutex>
#include <optional>
#include <memory>
#include <string>
#include <vector>

#include "shared-arena.h"
#include "worker-cgroup.h"

namespace pyworker {

class WorkerProcess {
public:
  struct Sockets {
    // The plugin's ends. `config` is invalid when the worker was spawned without one.
    kj::AutoCloseFd serving;
    kj::AutoCloseFd config;
  };

  int outputFd() const { return output_.get(); }
  // The read end of the worker's stdout+stderr pipe (see output-pump.h); owned here.

  SharedArena& sharedData() { return *arena_; }
  // The payload memory shared with this worker (a memfd it maps too, given as --data-fd).

  int laneOffers() const { return laneOffers_.get(); }
  // Where new lanes are handed to the worker (its --lane-fd; see lane-pool.h).

  WorkerProcess(const std::string& workerPath, const std::string& label, bool withConfigSocket,
                std::optional<uint64_t> memoryLimit,
                const std::vector<std::string>& extraArguments = {});
  // Spawns `workerPath --serve-fd=3 [--config-fd=4] --data-fd=5 --data-size=N --lane-fd=6
  // -- label`: stdin is /dev/null, stdout and stderr are a pipe to the plugin (under
  // `nbdkit -s` fds 0/1 are the NBD connection, and a daemon must not hold its caller's stdio
  // through the worker), its own process group (a Ctrl-C at nbdkit's terminal is nbdkit's to
  // handle), default signal dispositions. With a memory limit, its RLIMIT_AS is set before it
  // has loaded anything of the script.
  ~WorkerProcess() noexcept;
  // Stops the worker (see stop()).

  void removesPdbRendezvous() { pdb_ = true; }
  bool pdb() const { return pdb_; }
  // pdb=on: once this worker has ended, whoever sees it first removes the breakpoints'
  // directory it could not (removePdbLeftovers). Without pdb there is none to look for.
  KJ_DISALLOW_COPY(WorkerProcess);

  Sockets takeSockets();
  // Once: the plugin's ends of the socketpairs.

  pid_t pid() const { return pid_; }
  std::string identity() const { return "pyworker[" + std::to_string(pid_) + "]"; }
  // How the log names this worker.
  uid_t uid() const { return uid_; }
  gid_t gid() const { return gid_; }
  // The credentials it was started with (nbdkit's before any -u/-g switch).

  void tellToExit();
  // Hangs up on the worker (its serving socket, whatever copies of it live on): the worker's
  // signal to exit normally. Returns at once; idempotent.

  void stop(kj::Duration grace);
  // The worker exits by itself when its serving socket closes (ending what its script started:
  // worker/descendants.h); wait up to `grace` for that, then kill() it. Then its process
  // group. Reaps it if it is this process's child (after nbdkit daemonizes, the first worker is
  // the exited parent's child, and init reaps it). Idempotent.

  void kill();
  // SIGKILL now (through the pidfd: never a recycled pid), and before it every process its
  // script started (plugin/process-tree.h): the worker is stopped, its tree killed, then it.

  bool hasExited(kj::Duration wait = 0 * kj::MILLISECONDS);
  // Has the process ended (pidfd readable), or does it within `wait`?

  int pidfd() const { return pidfd_.get(); }
  // Readable once the process has ended: for an event loop to watch.

  bool wasKilledBy(int signal);
  // Once it has ended: whether `signal` ended it (false when that cannot be known here).

  std::string describeExit();
  // Once it has ended: "killed by SIGSEGV", "exited with status 3", ... (reaps it if it is
  // this process's child). Before that: "still running".

private:
  void killGroup();
  // SIGKILL what is left in the worker's process group once it has ended.

  pid_t pid_ = -1;
  pid_t spawner_ = -1;
  uid_t uid_ = 0;
  gid_t gid_ = 0;
  // getpid() at spawn: only the spawner may waitpid().
  kj::AutoCloseFd pidfd_;
  // Survives nbdkit's fork, so the daemon can still watch and kill a worker it did not spawn
  // without risking a recycled pid.
  Sockets sockets_;
  kj::AutoCloseFd output_;
  kj::AutoCloseFd laneOffers_;
  kj::byte* dataMap_ = nullptr;
  size_t dataSize_ = 0;
  std::unique_ptr<SharedArena> arena_;
  std::optional<WorkerCgroup> cgroup_;
  // Where one can be made (worker-cgroup.h): ends everything the script started, setsid()
  // daemons of a worker that died by itself included. Removed after the worker (declared
  // before what is destroyed first).
  bool pdb_ = false;  // removesPdbRendezvous()
  kj::AutoCloseFd lifeline_;
  // A duplicate of the plugin's serving end, kept to shutdown() the socket itself when
  // stopping: closing our fd alone is not EOF while a copy lives on (nbdkit --run forks, and
  // the process running the command holds copies of every fd until it ends).
  bool stopped_ = false;
  std::mutex hangUpMutex_;  // tellToExit() comes from the RPC thread and from stop()
  std::mutex exitMutex_;
  // describeExit() is asked by the RPC thread and by nbdkit's threads.
  bool reaped_ = false;
  std::string exitDescription_;
  int signal_ = 0;  // the signal that ended it, once reaped
  // Set when reaped: the status can be read only once.
};

}  // namespace pyworker
