#include "shutdown-watch.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <map>
#include <utility>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

namespace pyworker {

namespace {

constexpr auto STEP = std::chrono::milliseconds(250);
// How often busy() is asked.

kj::AutoCloseFd quitPipe() {
  // WARNING: nbdkit 1.32's internals. Before it serves, nbdkit makes a pipe to itself (its
  // "quit pipe": server/quit.c) and keeps both ends; quitting writes a byte that is never
  // read, and every nbdkit_nanosleep() polls the read end. It is then the one pipe of this
  // process with both ends open here (the plugin keeps only the read end of each worker's
  // output; under -s, nbdkit's moved stdin is one end only). Anything else (none, or more
  // than one) and this finds nothing.
  std::map<ino_t, std::pair<int, int>> ends;  // inode -> (read end, write end)
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return nullptr;
  KJ_DEFER(closedir(dir));
  while (dirent* entry = readdir(dir)) {
    char* end;
    long fd = strtol(entry->d_name, &end, 10);
    struct stat st;
    if (*end != '\0' || end == entry->d_name || fd == dirfd(dir) ||
        fstat(static_cast<int>(fd), &st) < 0 || !S_ISFIFO(st.st_mode)) {
      continue;
    }
    int mode = fcntl(static_cast<int>(fd), F_GETFL);
    auto& pair = ends.try_emplace(st.st_ino, -1, -1).first->second;
    if (mode >= 0 && (mode & O_ACCMODE) == O_RDONLY) pair.first = static_cast<int>(fd);
    if (mode >= 0 && (mode & O_ACCMODE) == O_WRONLY) pair.second = static_cast<int>(fd);
  }
  int found = -1;
  for (auto& [inode, pair] : ends) {
    if (pair.first < 0 || pair.second < 0) continue;
    if (found >= 0) return nullptr;
    found = pair.first;
  }
  if (found < 0) return nullptr;
  return kj::AutoCloseFd(fcntl(found, F_DUPFD_CLOEXEC, 0));
}

}  // namespace

ShutdownWatch::ShutdownWatch(std::chrono::milliseconds grace, std::function<bool()> busy,
                             std::function<void()> graceExpired)
    : grace_(grace),
      busy_(std::move(busy)),
      graceExpired_(std::move(graceExpired)),
      quit_(quitPipe()),
      thread_([this] { watch(); }) {}

ShutdownWatch::~ShutdownWatch() noexcept {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  stopped_.notify_all();
  thread_.join();
}

void ShutdownWatch::watch() {
  for (;;) {
    if (busy_()) {
      // While busy the watch stays in quitWithin() (a step at a time, the pace busy() is
      // asked at), so that the grace period starts as soon as nbdkit begins to shut down.
      if (quitWithin(STEP)) break;
      std::lock_guard<std::mutex> lock(mutex_);
      if (stopping_) return;
      continue;
    }
    std::unique_lock<std::mutex> lock(mutex_);
    if (stopped_.wait_for(lock, STEP, [this] { return stopping_; })) return;
  }
  shuttingDown_ = true;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    if (stopped_.wait_for(lock, grace_, [this] { return stopping_; })) return;
  }
  graceExpired_();
}

bool ShutdownWatch::quitWithin(std::chrono::milliseconds limit) {
  if (quit_ == nullptr) {
    // Outside a connection nbdkit_nanosleep() watches only nbdkit's quit flag (and logs an
    // error when it is set).
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(limit).count();
    return nbdkit_nanosleep(ns / 1000000000, ns % 1000000000) < 0 && errno == ESHUTDOWN;
  }
  pollfd p = {quit_.get(), POLLIN, 0};
  int r;
  do {
    r = poll(&p, 1, static_cast<int>(limit.count()));
  } while (r < 0 && errno == EINTR);
  if (r > 0) return true;
  if (r < 0) quit_ = nullptr;  // cannot happen; if it does, nbdkit's way from now on
  return false;
}

}  // namespace pyworker
