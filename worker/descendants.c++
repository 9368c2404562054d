#include "descendants.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

namespace pyworker {

namespace {

std::vector<pid_t> children() {
  // By /proc/*/stat: /proc/self/task/TID/children lists only one thread's children, and the
  // script forks from any thread.
  std::vector<pid_t> found;
  siginfo_t info{};
  if (waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) < 0 && errno == ECHILD) {
    // No child of any thread, so no descendant (one orphaned would be this subreaper's
    // child): spares reading every process's stat at each exit (~1 ms here, more on a host
    // running many processes).
    return found;
  }
  pid_t self = getpid();
  DIR* proc = opendir("/proc");
  if (!proc) return found;
  while (dirent* entry = readdir(proc)) {
    char* end;
    long pid = strtol(entry->d_name, &end, 10);
    if (*end != '\0' || pid <= 0) continue;
    char path[64], stat[512];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE* file = fopen(path, "re");
    if (!file) continue;
    size_t length = fread(stat, 1, sizeof stat - 1, file);
    fclose(file);
    stat[length] = '\0';
    const char* afterName = strrchr(stat, ')');  // the command name may hold anything
    char state;
    long parent;
    if (afterName && sscanf(afterName + 1, " %c %ld", &state, &parent) == 2 && parent == self) {
      found.push_back(static_cast<pid_t>(pid));
    }
  }
  closedir(proc);
  return found;
}

}  // namespace

bool becomeSubreaper() { return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0; }

void endDescendants() {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  for (;;) {
    // A child stays a zombie until reaped here, so its pid cannot name another process yet.
    std::vector<pid_t> found = children();
    if (found.empty()) return;
    for (pid_t pid : found) kill(pid, SIGKILL);
    for (pid_t pid : found) {
      while (waitpid(pid, nullptr, WNOHANG) == 0) {
        if (std::chrono::steady_clock::now() > deadline) return;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    }
    if (std::chrono::steady_clock::now() > deadline) return;
  }
}

}  // namespace pyworker
