// The worker's seccomp filter, installed for real in a forked child: refused calls fail with
// EPERM (clone3 with ENOSYS), everything else still works.

#include <gtest/gtest.h>

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstdlib>
#include <functional>
#include <string>

#include "seccomp-filter.h"

namespace pyworker {
namespace {

int errnoOf(long result) { return result < 0 ? errno : 0; }

std::string inChild(const SeccompOptions& options, const std::function<std::string()>& check) {
  // The filter cannot be removed: install it in a child, which reports through a pipe.
  int pipefd[2];
  if (pipe(pipefd) != 0) return "pipe failed";
  pid_t pid = fork();
  if (pid == 0) {
    close(pipefd[0]);
    std::string report;
    try {
      installSeccompFilter(buildSeccompFilter(options));
      report = check();
    } catch (const std::exception& e) {
      report = e.what();
    }
    if (write(pipefd[1], report.data(), report.size()) < 0) _exit(2);
    _exit(0);
  }
  close(pipefd[1]);
  std::string report;
  char buffer[512];
  ssize_t n;
  while ((n = read(pipefd[0], buffer, sizeof buffer)) > 0) report.append(buffer, n);
  close(pipefd[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return "child died: " + std::to_string(status);
  return report;
}

std::string expect(const char* what, int got, int expected) {
  if (got == expected) return "";
  return std::string(what) + ": errno " + std::to_string(got) + ", expected " +
         std::to_string(expected) + "; ";
}

TEST(WorkerSeccompFilter, RefusesWithEpermAndAllowsTheRest) {
  std::string report = inChild({}, [] {
    std::string r;
    r += expect("ptrace(TRACEME)", errnoOf(ptrace(PTRACE_TRACEME, 0, nullptr, nullptr)), EPERM);
    r += expect("ptrace(ATTACH)", errnoOf(ptrace(PTRACE_ATTACH, getppid(), nullptr, nullptr)),
                EPERM);
    r += expect("mount", errnoOf(mount("none", "/mnt", "tmpfs", 0, nullptr)), EPERM);
    r += expect("finit_module", errnoOf(syscall(SYS_finit_module, -1, "", 0)), EPERM);
    r += expect("init_module", errnoOf(syscall(SYS_init_module, nullptr, 0, "")), EPERM);
    r += expect("kexec_load", errnoOf(syscall(SYS_kexec_load, 0, 0, nullptr, 0)), EPERM);
    r += expect("bpf", errnoOf(syscall(SYS_bpf, 0, nullptr, 0)), EPERM);
    r += expect("keyctl", errnoOf(syscall(SYS_keyctl, 0, 0, 0, 0, 0)), EPERM);
    r += expect("perf_event_open", errnoOf(syscall(SYS_perf_event_open, nullptr, 0, -1, -1, 0)),
                EPERM);
    r += expect("reboot", errnoOf(syscall(SYS_reboot, 0, 0, 0, nullptr)), EPERM);
    r += expect("swapon", errnoOf(syscall(SYS_swapon, "/nonexistent", 0)), EPERM);
    r += expect("unshare", errnoOf(unshare(CLONE_NEWUSER)), EPERM);
    r += expect("setns", errnoOf(setns(-1, 0)), EPERM);
    r += expect("process_vm_readv",
                errnoOf(syscall(SYS_process_vm_readv, getppid(), nullptr, 0, nullptr, 0, 0)),
                EPERM);
    r += expect("io_uring_setup", errnoOf(syscall(SYS_io_uring_setup, 1, nullptr)), EPERM);
    r += expect("clone3", errnoOf(syscall(SYS_clone3, nullptr, 0)), ENOSYS);
    r += expect("chmod", errnoOf(chmod("/nonexistent", 0777)), EPERM);
    r += expect("fchmodat", errnoOf(fchmodat(AT_FDCWD, "/nonexistent", 0777, 0)), EPERM);
    r += expect("chown", errnoOf(chown("/nonexistent", 0, 0)), EPERM);
    r += expect("setxattr", errnoOf(setxattr("/nonexistent", "user.x", "", 0, 0)), EPERM);
    r += expect("clone(CLONE_NEWNET)",
                errnoOf(syscall(SYS_clone, CLONE_NEWNET | SIGCHLD, nullptr, nullptr, nullptr, 0)),
                EPERM);
    // Allowed: plain processes (glibc's fork is clone without namespace flags, after clone3's
    // ENOSYS for threads), sockets with the network on, files.
    pid_t child = fork();
    if (child == 0) _exit(7);
    int status = 0;
    if (child < 0 || waitpid(child, &status, 0) != child || WEXITSTATUS(status) != 7) {
      r += "fork failed; ";
    }
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) r += "socket(AF_INET) refused with the network on; ";
    else close(s);
    int fd = open("/dev/null", O_RDONLY);
    if (fd < 0) r += "open refused; ";
    else close(fd);
    char path[] = "/tmp/pyworker-seccomp-XXXXXX";
    fd = mkstemp(path);
    if (fd < 0) {
      r += "mkstemp failed; ";
    } else {
      if (fchmod(fd, 0600) != 0) r += "fchmod refused; ";  // a file it has open: allowed
      unlink(path);
      close(fd);
    }
    if (getpid() <= 0) r += "getpid; ";
    return r;
  });
  EXPECT_EQ(report, "");
}

TEST(WorkerSeccompFilter, NetworkOffRefusesEverySocketButSocketpair) {
  std::string report = inChild({.network = false}, [] {
    std::string r;
    r += expect("socket(AF_INET)", errnoOf(socket(AF_INET, SOCK_STREAM, 0)), EPERM);
    r += expect("socket(AF_INET6)", errnoOf(socket(AF_INET6, SOCK_DGRAM, 0)), EPERM);
    r += expect("socket(AF_UNIX)", errnoOf(socket(AF_UNIX, SOCK_STREAM, 0)), EPERM);
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair) != 0) {
      r += "socketpair refused; ";
    } else {
      close(pair[0]);
      close(pair[1]);
    }
    return r;
  });
  EXPECT_EQ(report, "");
}

TEST(WorkerSeccompFilter, SetsNoNewPrivs) {
  std::string report = inChild({}, [] {
    return prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1 ? std::string() : "no_new_privs unset";
  });
  EXPECT_EQ(report, "");
}

TEST(WorkerSeccompFilter, EveryJumpIsInRange) {
  // Classic BPF jumps forward only, by at most 255: the builder would have thrown.
  auto program = buildSeccompFilter({.network = false});
  EXPECT_GT(program.size(), 50u);
  EXPECT_LT(program.size(), 256u);
}

}  // namespace
}  // namespace pyworker
