#include "orphan-watch.h"

#include "descendants.h"
#include "native-thread.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
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
  int error = startThread(SMALL_STACK_SIZE, [servingFd, grace]() {
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
  });
  if (error != 0) {
    // Not fatal: only a script that blocks its main thread while nbdkit dies is affected.
    fprintf(stderr, "nbdkit-pyworker-worker: orphan watch: %s\n", strerror(error));
  }
}

}  // namespace pyworker
