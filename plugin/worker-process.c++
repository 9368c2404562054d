#include "worker-process.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <kj/debug.h>

#include "process-tree.h"
#include "pdb-leftovers.h"
#include "worker-cgroup.h"
#include "worker-spawn.h"

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include <vector>

namespace pyworker {

namespace {

constexpr int SERVE_FD = 3;
constexpr int CONFIG_FD = 4;
constexpr int DATA_FD = 5;
constexpr int LANE_FD = 6;
constexpr int FIRST_FREE_FD = 7;

constexpr size_t DATA_SIZE = 64 * 1024 * 1024 + 2 * 1024 * 1024;
// nbdkit's largest request (64 MiB) plus room for smaller ones beside it. A memfd's pages
// exist only once touched, so the idle cost is address space, not memory.
constexpr size_t DATA_UNIT = 64 * 1024;
// The worker's ends are moved above the fds they are dup2()ed onto: dup2(fd, fd) would keep
// FD_CLOEXEC and the worker would start without its socket.

struct SocketPair {
  kj::AutoCloseFd pluginEnd;
  kj::AutoCloseFd workerEnd;
};

kj::AutoCloseFd duplicateAbove(int fd, int minimum) {
  int copy;
  KJ_SYSCALL(copy = fcntl(fd, F_DUPFD_CLOEXEC, minimum));
  return kj::AutoCloseFd(copy);
}

kj::AutoCloseFd moveAbove(kj::AutoCloseFd fd, int minimum) {
  return duplicateAbove(fd.get(), minimum);
}

SocketPair makeSocketPair(int type = SOCK_STREAM) {
  int fds[2];
  KJ_SYSCALL(socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, fds));
  return {kj::AutoCloseFd(fds[0]), moveAbove(kj::AutoCloseFd(fds[1]), FIRST_FREE_FD)};
}

constexpr int P_PIDFD_TYPE = 3;
// P_PIDFD for waitid(), Linux >= 5.4; glibc 2.36's <sys/wait.h> does not name it.

int pidfdOpen(pid_t pid) {
  return static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
}

int pidfdSendSignal(int pidfd, int sig) {
  return static_cast<int>(syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0));
}

}  // namespace

WorkerProcess::WorkerProcess(const std::string& workerPath, const std::string& label,
                             bool withConfigSocket, std::optional<uint64_t> memoryLimit,
                             const std::vector<std::string>& extraArguments) {
  int outputPipe[2];
  KJ_SYSCALL(pipe2(outputPipe, O_CLOEXEC));
  kj::AutoCloseFd outputRead(outputPipe[0]);
  auto outputWrite = moveAbove(kj::AutoCloseFd(outputPipe[1]), FIRST_FREE_FD);
  int memfd;
  KJ_SYSCALL(memfd = memfd_create("pyworker-data", MFD_CLOEXEC));
  auto dataFd = moveAbove(kj::AutoCloseFd(memfd), FIRST_FREE_FD);
  KJ_SYSCALL(ftruncate(dataFd.get(), static_cast<off_t>(DATA_SIZE)));
  auto serving = makeSocketPair();
  auto laneOffers = makeSocketPair(SOCK_SEQPACKET);  // one lane socket per message
  SocketPair config;
  if (withConfigSocket) config = makeSocketPair();

  // Everything the child needs is built here: after posix_spawn's clone only exec runs.
  std::vector<std::string> args = {workerPath, "--serve-fd=" + std::to_string(SERVE_FD)};
  if (withConfigSocket) args.push_back("--config-fd=" + std::to_string(CONFIG_FD));
  args.push_back("--data-fd=" + std::to_string(DATA_FD));
  args.push_back("--data-size=" + std::to_string(DATA_SIZE));
  args.push_back("--lane-fd=" + std::to_string(LANE_FD));
  args.insert(args.end(), extraArguments.begin(), extraArguments.end());
  args.push_back("--");
  args.push_back(label);

  SpawnPlan plan{workerPath, kj::mv(args), {{outputWrite.get(), 1}, {outputWrite.get(), 2},
                                            {serving.workerEnd.get(), SERVE_FD}}};
  if (withConfigSocket) plan.fds.push_back({config.workerEnd.get(), CONFIG_FD});
  plan.fds.push_back({dataFd.get(), DATA_FD});
  plan.fds.push_back({laneOffers.workerEnd.get(), LANE_FD});

  std::string noCgroup;
  auto cgroup = WorkerCgroup::prepare(noCgroup);
  auto spawned = spawnWorker(plan, cgroup ? cgroup->directory() : -1);
  pid_t pid = spawned.pid;
  pid_ = pid;
  spawner_ = getpid();
  uid_ = geteuid();
  gid_ = getegid();

  int pidfd = spawned.pidfd >= 0 ? spawned.pidfd : pidfdOpen(pid);
  if (pidfd < 0) {
    int e = errno;
    ::kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    KJ_FAIL_SYSCALL("pidfd_open", e);
  }
  pidfd_ = kj::AutoCloseFd(pidfd);
  if (cgroup && (spawned.inCgroup || cgroup->adopt(pid, noCgroup))) {
    cgroup_.emplace(std::move(*cgroup));
  }
  cgroup.reset();  // one not used is removed
  if (cgroup_) {
    nbdkit_debug("pyworker: worker process %d: the processes its script starts end with it "
                 "(its cgroup %s)",
                 static_cast<int>(pid), cgroup_->path().c_str());
  } else {
    nbdkit_debug("pyworker: worker process %d: the processes its script starts end with it "
                 "(it is their child subreaper; its process group if it dies by itself, but "
                 "not a setsid() daemon then: no cgroup, %s)",
                 static_cast<int>(pid), noCgroup.c_str());
  }
  if (memoryLimit) {
    // Set from here rather than by the worker: the script's first line runs only after the
    // plugin's load request, which comes later on the socket.
    rlimit limit = {*memoryLimit, *memoryLimit};
    if (prlimit(pid, RLIMIT_AS, &limit, nullptr) < 0) {
      int e = errno;
      pidfdSendSignal(pidfd, SIGKILL);
      waitpid(pid, nullptr, 0);
      KJ_FAIL_SYSCALL("prlimit(RLIMIT_AS)", e);
    }
  }
  lifeline_ = duplicateAbove(serving.pluginEnd.get(), FIRST_FREE_FD);
  sockets_ = {kj::mv(serving.pluginEnd), kj::mv(config.pluginEnd)};
  laneOffers_ = kj::mv(laneOffers.pluginEnd);
  void* map = mmap(nullptr, DATA_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, dataFd.get(), 0);
  if (map == MAP_FAILED) KJ_FAIL_SYSCALL("mmap(pyworker-data)", errno);
  dataMap_ = static_cast<kj::byte*>(map);
  dataSize_ = DATA_SIZE;
  arena_ = std::make_unique<SharedArena>(dataMap_, DATA_SIZE, DATA_UNIT);
  output_ = kj::mv(outputRead);
}

WorkerProcess::~WorkerProcess() noexcept {
  try {
    stop(3 * kj::SECONDS);  // room for the script's atexit handlers on a busy machine
  } catch (...) {
    // Nothing better to do in a destructor; stop() only fails if the kernel does.
  }
  arena_.reset();
  if (dataMap_ != nullptr) munmap(dataMap_, dataSize_);
}

WorkerProcess::Sockets WorkerProcess::takeSockets() { return kj::mv(sockets_); }

std::string WorkerProcess::describeExit() {
  std::lock_guard<std::mutex> lock(exitMutex_);
  if (!exitDescription_.empty()) return exitDescription_;
  if (!hasExited()) return "still running";
  killGroup();  // first sign of its end here (a crash): before waitid() below reaps it
  if (getpid() != spawner_) {
    return "ended (its exit status is not known here: it was started before nbdkit forked)";
  }
  siginfo_t info{};
  if (waitid(static_cast<idtype_t>(P_PIDFD_TYPE), static_cast<id_t>(pidfd_.get()), &info,
             WEXITED | WNOHANG) < 0 ||
      info.si_pid == 0) {
    return "ended";
  }
  reaped_ = true;
  if (info.si_code == CLD_EXITED) {
    exitDescription_ = "exited with status " + std::to_string(info.si_status);
  } else {
    signal_ = info.si_status;
    const char* name = sigabbrev_np(info.si_status);
    exitDescription_ = std::string("killed by ") + (name ? "SIG" + std::string(name)
                                                           : "signal " + std::to_string(info.si_status));
    if (info.si_code == CLD_DUMPED) exitDescription_ += " (core dumped)";
  }
  return exitDescription_;
}

bool WorkerProcess::wasKilledBy(int signal) {
  describeExit();  // reaps it, if it has ended and is ours
  std::lock_guard<std::mutex> lock(exitMutex_);
  return signal_ == signal;
}

void WorkerProcess::kill() {
  if (cgroup_ && cgroup_->killAll()) {  // all at once, the worker among them
    pidfdSendSignal(pidfd_.get(), SIGKILL);
    return;
  }
  // Stopped, the worker starts nothing more, and as the subreaper of what its script started
  // it keeps all of that below it while the tree is ended; then the worker itself.
  pidfdSendSignal(pidfd_.get(), SIGSTOP);
  killDescendants(pid_);
  pidfdSendSignal(pidfd_.get(), SIGKILL);
}

void WorkerProcess::killGroup() {
  // For a worker that ended without ending what its script started (a crash, os._exit(), a
  // SIGKILL from outside): its children were reparented to init, but those still in its
  // process group (the worker's pid: it leads one from its spawn) can be found. A setsid() daemon
  // cannot, unless the worker has a cgroup. Called with exitMutex_ held.
  if (cgroup_ && cgroup_->killAll()) {
    // Every process the script started is in the cgroup (a setsid() one included): no need
    // to look for the group's members among all processes (~1 ms, more on a busy host).
    return;
  }
  if (pid_ <= 1) return;
  if (getpid() == spawner_ && !reaped_) {
    // Our unreaped zombie holds the number: the group can only be the worker's.
    ::kill(-pid_, SIGKILL);
    return;
  }
  // Reaped (or init's to reap): the kernel keeps the number while any member of the group
  // lives, but once none does it may name a new process (pids wrap at 32768 here) that leads a
  // group of its own. So: members only, each through a pidfd, and none if the number is a live
  // process's pid again.
  killGroupMembers(pid_);
}
bool WorkerProcess::hasExited(kj::Duration wait) {
  pollfd p = {pidfd_.get(), POLLIN, 0};
  int r;
  do {
    r = poll(&p, 1, static_cast<int>(wait / kj::MILLISECONDS));
  } while (r < 0 && errno == EINTR);
  return r > 0;
}

void WorkerProcess::tellToExit() {
  std::lock_guard<std::mutex> lock(hangUpMutex_);
  // End of the serving connection is the worker's signal to exit.
  sockets_ = {};
  if (lifeline_ != nullptr) shutdown(lifeline_.get(), SHUT_RDWR);
  lifeline_ = nullptr;
}

void WorkerProcess::stop(kj::Duration grace) {
  if (stopped_) return;
  stopped_ = true;
  tellToExit();

  pollfd p = {pidfd_.get(), POLLIN, 0};
  int r;
  do {
    r = poll(&p, 1, static_cast<int>(grace / kj::MILLISECONDS));
  } while (r < 0 && errno == EINTR);
  if (r == 0) {
    kill();
    do {
      r = poll(&p, 1, 5000);
    } while (r < 0 && errno == EINTR);
  }
  std::lock_guard<std::mutex> lock(exitMutex_);
  killGroup();
  if (getpid() == spawner_ && !reaped_) {
    while (waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
    }
  }
  if (cgroup_) cgroup_->remove();  // also when connections nbdkit never closed hold this
  if (pdb_) removePdbLeftovers(pid_);  // a worker killed here could not remove its own
  nbdkit_debug("pyworker: worker process %d exited", static_cast<int>(pid_));
}

}  // namespace pyworker
