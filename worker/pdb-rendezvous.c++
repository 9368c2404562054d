#include "pdb-rendezvous.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>

namespace pyworker {

namespace {

std::mutex mutex;
std::string directory;  // under `mutex`; empty: none made (or removed)
uid_t owner = 0;

void removeLocked() {
  if (directory.empty()) return;
  // Only files the worker put there (sockets, where-lines); a subdirectory would be
  // someone else's doing and stays, as does the directory then.
  if (DIR* dir = opendir(directory.c_str())) {
    while (dirent* entry = readdir(dir)) {
      if (strcmp(entry->d_name, ".") != 0 && strcmp(entry->d_name, "..") != 0) {
        unlinkat(dirfd(dir), entry->d_name, 0);
      }
    }
    closedir(dir);
  }
  rmdir(directory.c_str());
  directory.clear();
}

}  // namespace

std::string pdbRendezvous() {
  std::lock_guard<std::mutex> lock(mutex);
  if (!directory.empty() && owner != geteuid()) removeLocked();  // may fail: not ours now
  if (directory.empty()) {
    const char* base = getenv("TMPDIR");
    if (base == nullptr || *base != '/') base = "/tmp";
    // mkdtemp: a fresh name that nobody could have prepared, mode 0700.
    std::string pattern = std::string(base) + "/pyworker-pdb-" + std::to_string(getpid()) +
                          "-XXXXXX";
    if (mkdtemp(pattern.data()) == nullptr) {
      throw std::runtime_error("cannot make a directory for pdb in " + std::string(base) +
                               ": " + strerror(errno));
    }
    directory = pattern;
    owner = geteuid();
  }
  return directory;
}

void removePdbRendezvous() {
  std::lock_guard<std::mutex> lock(mutex);
  removeLocked();
}

}  // namespace pyworker
