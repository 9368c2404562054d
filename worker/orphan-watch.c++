#include "orphan-watch.h"

#include "descendants.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <unistd.h>

#include <atomic>
#include <thread>

namespace pyworker {

namespace {

std::atomic<bool> exiting = false;

void waitForHangUp(int fd) {
  // POLLRDHUP without POLLIN: the main thread's event loop reads this socket, not us.
  pollfd p = {fd, POLLRDHUP, 0};
  for (;;) {
    int r = poll(&p, 1, -1);
    if (r > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL))) return;
    if (r < 0 && errno != EINTR) return;
  }
}

}  // namespace

void orderlyExitBegun() { exiting = true; }

void startOrphanWatch(int servingFd, std::chrono::milliseconds grace) {
  std::thread([servingFd, grace]() {
    waitForHangUp(servingFd);
    auto step = std::chrono::milliseconds(20);
    for (auto waited = std::chrono::milliseconds(0); waited < grace; waited += step) {
      if (exiting) return;
      std::this_thread::sleep_for(step);
    }
    if (exiting) return;
    fputs("nbdkit-pyworker-worker: the plugin is gone while the script is still running on "
          "the main thread: exiting\n", stderr);
    fflush(nullptr);
    endDescendants();
    _exit(1);
  }).detach();
}

}  // namespace pyworker
