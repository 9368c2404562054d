#include "worker-cgroup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

namespace pyworker {

namespace {

constexpr auto EMPTY_WAIT = std::chrono::seconds(1);
constexpr const char* PREFIX = "pyworker-";

std::string unescapeMountPath(const std::string& field) {
  // mountinfo writes space, tab, newline and backslash as \ooo.
  std::string out;
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size()) {
      out += static_cast<char>(std::stoi(field.substr(i + 1, 3), nullptr, 8));
      i += 3;
    } else {
      out += field[i];
    }
  }
  return out;
}

bool writeFile(const std::string& path, const std::string& text, int& error) {
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    error = errno;
    return false;
  }
  bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  error = ok ? 0 : errno;
  close(fd);
  return ok;
}

bool populated(const std::string& path) {
  std::ifstream events(path + "/cgroup.events");
  std::string key;
  int value;
  while (events >> key >> value) {
    if (key == "populated") return value != 0;
  }
  return false;  // gone
}

bool alive(long pid) {
  // A zombie is dead (an nbdkit killed a moment ago may not be reaped yet).
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  if (pid <= 0 || !std::getline(stat, text)) return false;
  auto afterName = text.rfind(')');
  return afterName == std::string::npos || afterName + 2 >= text.size() ||
         text[afterName + 2] != 'Z';
}

void removeStale(const std::string& parent) {
  // Left by an nbdkit that was killed (its workers then exit by themselves, the directory
  // stays): the nbdkit named is gone, and the cgroup empty: rmdir() refuses a populated one
  // (a worker still running, or started by an nbdkit before it forked into the background).
  DIR* dir = opendir(parent.c_str());
  if (!dir) return;
  while (dirent* entry = readdir(dir)) {
    long nbdkit, number;
    char rest;
    if (sscanf(entry->d_name, "pyworker-%ld-%ld%c", &nbdkit, &number, &rest) != 2) continue;
    if (alive(nbdkit)) continue;
    rmdir((parent + "/" + entry->d_name).c_str());
  }
  closedir(dir);
}

}  // namespace

std::optional<std::string> cgroup2Directory(std::string& whyNot) {
  std::ifstream mountinfo("/proc/self/mountinfo");
  std::string line, mountPoint;
  while (std::getline(mountinfo, line)) {
    // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS
    auto separator = line.find(" - ");
    if (separator == std::string::npos) continue;
    std::istringstream after(line.substr(separator + 3));
    std::string type;
    after >> type;
    if (type != "cgroup2") continue;
    std::istringstream fields(line.substr(0, separator));
    std::string id, parent, device, root, point;
    fields >> id >> parent >> device >> root >> point;
    if (root != "/") continue;  // a bind mount of a subtree: our path would not be under it
    mountPoint = unescapeMountPath(point);
    break;
  }
  if (mountPoint.empty()) {
    whyNot = "no cgroup2 file system is mounted";
    return std::nullopt;
  }
  std::ifstream cgroups("/proc/self/cgroup");
  while (std::getline(cgroups, line)) {
    if (line.rfind("0::", 0) == 0) {
      std::string own = line.substr(3);
      if (own == "/") own.clear();
      return mountPoint + own;
    }
  }
  whyNot = "this process has no cgroup2 cgroup (/proc/self/cgroup)";
  return std::nullopt;
}

std::optional<WorkerCgroup> WorkerCgroup::prepare(std::string& whyNot) {
  static std::atomic<unsigned> made{0};
  auto parent = cgroup2Directory(whyNot);
  if (!parent) return std::nullopt;
  removeStale(*parent);
  std::string path;
  for (;;) {
    path = *parent + "/" + PREFIX + std::to_string(getpid()) + "-" + std::to_string(++made);
    if (mkdir(path.c_str(), 0755) == 0) break;
    // EEXIST: left by an earlier nbdkit of this pid (removeStale() spares it); take the next.
    if (errno != EEXIST) {
      whyNot = "cannot create a cgroup in " + *parent + ": " + strerror(errno);
      return std::nullopt;
    }
  }
  int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    whyNot = "cannot open the cgroup " + path + ": " + strerror(errno);
    rmdir(path.c_str());
    return std::nullopt;
  }
  WorkerCgroup cgroup(path, kj::AutoCloseFd(fd));
  struct stat st;
  if (fstatat(fd, "cgroup.kill", &st, 0) < 0) {
    whyNot = "cgroup.kill is missing (Linux >= 5.14 has it)";
    return std::nullopt;  // removes the directory
  }
  return cgroup;
}

bool WorkerCgroup::adopt(pid_t worker, std::string& whyNot) {
  int error;
  if (!writeFile(path_ + "/cgroup.procs", std::to_string(worker), error)) {
    whyNot = "cannot move the worker into " + path_ + ": " + strerror(error);
    return false;
  }
  return true;
}

WorkerCgroup::WorkerCgroup(WorkerCgroup&& other) noexcept
    : path_(std::move(other.path_)),
      directory_(std::move(other.directory_)),
      removed_(other.removed_.exchange(true)) {}

void WorkerCgroup::remove() {
  if (removed_.load()) return;
  killAll();
  auto deadline = std::chrono::steady_clock::now() + EMPTY_WAIT;
  while (populated(path_) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  removed_ = true;
  rmdir(path_.c_str());  // if it failed, a later nbdkit's removeStale() does it
}

bool WorkerCgroup::killAll() {
  if (removed_.load()) return false;
  int error;
  return writeFile(path_ + "/cgroup.kill", "1", error);
}

}  // namespace pyworker
