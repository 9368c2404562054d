#include "process-tree.h"

#include <dirent.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <thread>
#include <vector>

namespace pyworker {

namespace {

struct Entry {
  pid_t parent;
  pid_t group;
  bool live;  // not a zombie
};

bool readEntry(pid_t pid, Entry& entry) {
  char path[64], stat[512];
  snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  FILE* file = fopen(path, "re");
  if (!file) return false;
  size_t length = fread(stat, 1, sizeof stat - 1, file);
  fclose(file);
  stat[length] = '\0';
  const char* afterName = strrchr(stat, ')');  // the command name may hold anything
  char state;
  long parent, group;
  if (!afterName || sscanf(afterName + 1, " %c %ld %ld", &state, &parent, &group) != 3) {
    return false;
  }
  entry = {static_cast<pid_t>(parent), static_cast<pid_t>(group), state != 'Z' && state != 'X'};
  return true;
}

std::map<pid_t, Entry> processes() {
  std::map<pid_t, Entry> found;
  DIR* proc = opendir("/proc");
  if (!proc) return found;
  while (dirent* entry = readdir(proc)) {
    char* end;
    long pid = strtol(entry->d_name, &end, 10);
    Entry e;
    if (*end == '\0' && pid > 0 && readEntry(static_cast<pid_t>(pid), e)) {
      found[static_cast<pid_t>(pid)] = e;
    }
  }
  closedir(proc);
  return found;
}

std::set<pid_t> below(pid_t root, const std::map<pid_t, Entry>& all) {
  std::set<pid_t> tree = {root};
  for (bool grew = true; grew;) {
    grew = false;
    for (const auto& [pid, entry] : all) {
      if (tree.count(entry.parent) && tree.insert(pid).second) grew = true;
    }
  }
  tree.erase(root);
  return tree;
}

}  // namespace

void killDescendants(pid_t root) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  for (;;) {
    auto all = processes();
    std::set<pid_t> tree = below(root, all);
    bool anyLive = false;
    for (pid_t pid : tree) {
      if (!all[pid].live) continue;
      anyLive = true;
      int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
      if (pidfd < 0) continue;  // gone already
      // The pidfd names one process for good; is it still the one found below root?
      Entry now;
      if (readEntry(pid, now) && (now.parent == root || tree.count(now.parent))) {
        syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0);
      }
      close(pidfd);
    }
    if (!anyLive || std::chrono::steady_clock::now() > deadline) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

void killGroupMembers(pid_t group) {
  auto all = processes();
  auto leader = all.find(group);
  if (leader != all.end() && leader->second.live) return;
  for (const auto& [pid, entry] : all) {
    if (pid == group || entry.group != group || !entry.live) continue;
    int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
    if (pidfd < 0) continue;
    Entry now;
    if (readEntry(pid, now) && now.group == group) {
      syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0);
    }
    close(pidfd);
  }
}

}  // namespace pyworker
