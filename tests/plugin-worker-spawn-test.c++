// plugin/worker-spawn.h and the cgroup it starts a worker in (worker-cgroup.h): what the child
// gets (fds, stdin, process group, signals), the exit status, a missing executable refused,
// and, where a cgroup can be made (root, cgroup2), the child starting inside it.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>

#include <kj/exception.h>

#include "worker-cgroup.h"
#include "worker-spawn.h"

using pyworker::spawnWorker;
using pyworker::SpawnPlan;
using pyworker::WorkerCgroup;

namespace {

int exitStatus(pid_t pid) {
  int status = 0;
  EXPECT_EQ(waitpid(pid, &status, 0), pid);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string readAll(int fd) {
  std::string text;
  char buffer[256];
  ssize_t n;
  while ((n = read(fd, buffer, sizeof buffer)) > 0) text.append(buffer, n);
  return text;
}

// The child reports what it was given on fd 3: stdin's target, whether it leads its process
// group, its blocked and ignored signals (SIGPIPE is ignored here, as in nbdkit).
const char* REPORT =
    "readlink /proc/self/fd/0 >&3; "
    "[ \"$(ps -o pgid= -p $$ | tr -d ' ')\" = $$ ] && echo leader >&3; "
    "grep -E '^Sig(Blk|Ign)' /proc/self/status >&3; exit 7";

bool checkSpawn(int cgroupDirectory) {
  // Whether the child was started inside the cgroup.
  signal(SIGPIPE, SIG_IGN);
  int report[2];
  if (pipe2(report, O_CLOEXEC) != 0) {
    ADD_FAILURE() << "pipe2: " << strerror(errno);
    return false;
  }
  int high = fcntl(report[1], F_DUPFD_CLOEXEC, 10);  // above the fd it goes to
  close(report[1]);
  SpawnPlan plan{"/bin/sh", {"sh", "-c", REPORT}, {{high, 3}}};
  auto spawned = spawnWorker(plan, cgroupDirectory);
  close(high);
  if (spawned.pidfd >= 0) close(spawned.pidfd);
  std::string text = readAll(report[0]);
  close(report[0]);
  EXPECT_EQ(exitStatus(spawned.pid), 7);
  EXPECT_NE(text.find("/dev/null\n"), std::string::npos) << text;
  EXPECT_NE(text.find("leader\n"), std::string::npos) << text;
  EXPECT_NE(text.find("SigBlk:\t0000000000000000\n"), std::string::npos) << text;
  // nbdkit's SIG_IGN of SIGPIPE is not inherited (glibc's posix_spawn() ignores its own
  // internal signals, 32 and 33, in the child: not ours to check).
  auto ignored = text.find("SigIgn:\t");
  EXPECT_NE(ignored, std::string::npos) << text;
  if (ignored == std::string::npos) return spawned.inCgroup;
  unsigned long long mask = std::stoull(text.substr(ignored + 8, 16), nullptr, 16);
  EXPECT_EQ(mask & (1ULL << (SIGPIPE - 1)), 0u) << text;
  return spawned.inCgroup;
}

}  // namespace

TEST(PluginWorkerSpawn, WithoutCgroupTheChildGetsItsSetUp) {
  EXPECT_FALSE(checkSpawn(-1));
}

TEST(PluginWorkerSpawn, InsideACgroupWhereOneCanBeMade) {
  std::string whyNot;
  auto cgroup = WorkerCgroup::prepare(whyNot);
  if (!cgroup) GTEST_SKIP() << "no cgroup here: " << whyNot;
  // The child's /proc/PID/cgroup is gone once reaped: ask a sleeping child first.
  SpawnPlan sleeper{"/bin/sleep", {"sleep", "30"}, {}};
  auto spawned = spawnWorker(sleeper, cgroup->directory());
  EXPECT_TRUE(spawned.inCgroup);
  std::ifstream own("/proc/" + std::to_string(spawned.pid) + "/cgroup");
  std::string line, unified;
  while (std::getline(own, line)) {
    if (line.rfind("0::", 0) == 0) unified = line.substr(3);
  }
  EXPECT_NE(unified.find("/pyworker-" + std::to_string(getpid()) + "-"), std::string::npos)
      << unified;
  EXPECT_EQ(cgroup->path().substr(cgroup->path().size() - unified.size()), unified);
  EXPECT_TRUE(cgroup->killAll());
  EXPECT_EQ(exitStatus(spawned.pid), 128 + SIGKILL);
  if (spawned.pidfd >= 0) close(spawned.pidfd);
  auto second = WorkerCgroup::prepare(whyNot);
  ASSERT_TRUE(second) << whyNot;
  EXPECT_TRUE(checkSpawn(second->directory()));
}

TEST(PluginWorkerSpawn, AMissingExecutableIsRefused) {
  SpawnPlan plan{"/nonexistent/worker", {"worker"}, {}};
  EXPECT_THROW(spawnWorker(plan, -1), kj::Exception);
  std::string whyNot;
  if (auto cgroup = WorkerCgroup::prepare(whyNot)) {
    EXPECT_THROW(spawnWorker(plan, cgroup->directory()), kj::Exception);
  }
}
