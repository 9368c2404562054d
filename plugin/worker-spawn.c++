#include "worker-spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <kj/debug.h>
#include <kj/io.h>

extern char** environ;

namespace pyworker {

namespace {

void check(int error, const char* what) {
  if (error != 0) KJ_FAIL_SYSCALL(what, error);
}

class SpawnFileActions {
  // RAII for posix_spawn_file_actions_t.
public:
  SpawnFileActions() { KJ_ASSERT(posix_spawn_file_actions_init(&actions) == 0); }
  ~SpawnFileActions() { posix_spawn_file_actions_destroy(&actions); }
  KJ_DISALLOW_COPY(SpawnFileActions);
  posix_spawn_file_actions_t actions;
};

class SpawnAttributes {
  // RAII for posix_spawnattr_t.
public:
  SpawnAttributes() { KJ_ASSERT(posix_spawnattr_init(&attributes) == 0); }
  ~SpawnAttributes() { posix_spawnattr_destroy(&attributes); }
  KJ_DISALLOW_COPY(SpawnAttributes);
  posix_spawnattr_t attributes;
};

Spawned withPosixSpawn(const SpawnPlan& plan, char* const* argv) {
  SpawnFileActions files;
  check(posix_spawn_file_actions_addopen(&files.actions, 0, "/dev/null", O_RDONLY, 0),
        "posix_spawn_file_actions_addopen");
  for (auto [from, to] : plan.fds) {
    check(posix_spawn_file_actions_adddup2(&files.actions, from, to), "adddup2");
  }
  SpawnAttributes attrs;
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  check(posix_spawnattr_setsigmask(&attrs.attributes, &none), "setsigmask");
  check(posix_spawnattr_setsigdefault(&attrs.attributes, &all), "setsigdefault");
  check(posix_spawnattr_setpgroup(&attrs.attributes, 0), "setpgroup");
  check(posix_spawnattr_setflags(&attrs.attributes, POSIX_SPAWN_SETSIGMASK |
                                                        POSIX_SPAWN_SETSIGDEF |
                                                        POSIX_SPAWN_SETPGROUP),
        "setflags");
  Spawned spawned;
  int error = posix_spawn(&spawned.pid, plan.path.c_str(), &files.actions, &attrs.attributes,
                          argv, environ);
  if (error != 0) KJ_FAIL_SYSCALL("posix_spawn", error, plan.path);
  return spawned;
}

[[noreturn]] void becomeWorker(const SpawnPlan& plan, char* const* argv, int report) {
  // The child of clone3(): a copy of nbdkit with only this thread, so only system calls until
  // exec (no allocation, no lock another thread may have held). All signals are blocked on
  // entry (see cloneIntoCgroup()).
  struct sigaction byDefault = {};
  byDefault.sa_handler = SIG_DFL;
  for (int s = 1; s < NSIG; ++s) sigaction(s, &byDefault, nullptr);  // some refuse: fine
  int error = 0;
  int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null < 0 || dup2(null, 0) < 0) error = errno;
  for (auto [from, to] : plan.fds) {
    if (error == 0 && dup2(from, to) < 0) error = errno;
  }
  if (error == 0 && setpgid(0, 0) < 0) error = errno;
  if (error == 0) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    execve(plan.path.c_str(), argv, environ);
    error = errno;
  }
  ssize_t ignored = write(report, &error, sizeof error);
  (void)ignored;
  _exit(127);
}

bool cloneIntoCgroup(const SpawnPlan& plan, char* const* argv, int cgroupDirectory,
                     Spawned& spawned) {
  // False when the child could not be made this way; throws if it was, but exec failed.
  int reportPipe[2];
  KJ_SYSCALL(pipe2(reportPipe, O_CLOEXEC));
  kj::AutoCloseFd reportRead(reportPipe[0]), reportWrite(reportPipe[1]);
  int pidfd = -1;
  clone_args args = {};
  args.flags = CLONE_INTO_CGROUP | CLONE_PIDFD | CLONE_VFORK;
  args.pidfd = reinterpret_cast<uint64_t>(&pidfd);
  args.exit_signal = SIGCHLD;
  args.cgroup = static_cast<uint64_t>(cgroupDirectory);
  // Blocked around the clone, as posix_spawn() does: the child must run none of nbdkit's
  // handlers before it has set them to the default.
  sigset_t all, before;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &before);
  long pid = syscall(SYS_clone3, &args, sizeof args);
  if (pid == 0) becomeWorker(plan, argv, reportWrite.get());
  pthread_sigmask(SIG_SETMASK, &before, nullptr);
  if (pid < 0) {
    // No clone3 (ENOSYS: old kernel, a container's seccomp profile), or not into this cgroup
    // (EACCES, EBUSY, ...): posix_spawn() then, whose own errors are the ones to report.
    return false;
  }
  reportWrite = nullptr;
  int error = 0;
  ssize_t n;
  do {
    n = read(reportRead.get(), &error, sizeof error);
  } while (n < 0 && errno == EINTR);
  if (n > 0) {  // exec failed: the child has exited
    close(pidfd);
    waitpid(static_cast<pid_t>(pid), nullptr, 0);
    KJ_FAIL_SYSCALL("execve", error, plan.path);
  }
  spawned = {static_cast<pid_t>(pid), pidfd, true};
  return true;
}

}  // namespace

Spawned spawnWorker(const SpawnPlan& plan, int cgroupDirectory) {
  std::vector<std::string> arguments = plan.arguments;
  std::vector<char*> argv;
  for (auto& a : arguments) argv.push_back(a.data());
  argv.push_back(nullptr);
  Spawned spawned;
  if (cgroupDirectory >= 0 && cloneIntoCgroup(plan, argv.data(), cgroupDirectory, spawned)) {
    return spawned;
  }
  return withPosixSpawn(plan, argv.data());
}

}  // namespace pyworker
