// libFuzzer target: the worker's handling of lane calls. The input is what the plugin writes
// on a lane (LaneCall messages in Cap'n Proto's stream framing; see "Lanes" in
// schema/pyworker.capnp), raw bytes on a real socket that the real LaneServer serves on a
// thread of its own around a real script (worker-fixture.h); then the plugin's end hangs up.
// Whatever the bytes, the worker must answer or drop the lane: a crash, a sanitizer report, or
// a lane still open 10 s after its plugin end stopped writing is a bug.

#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "worker-fixture.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto& fixture = pyworker::fuzz::WorkerFixture::get();
  auto lane = fixture.newLane();
  int sndbuf = 4 * 1024 * 1024;
  setsockopt(lane.get(), SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
  for (size_t at = 0; at < size;) {
    ssize_t n = send(lane.get(), data + at, size - at, MSG_NOSIGNAL);
    if (n <= 0) break;  // the worker dropped the lane already
    at += static_cast<size_t>(n);
  }
  shutdown(lane.get(), SHUT_WR);
  // Drain the replies until the worker closes its end: then its lane thread is done.
  char buffer[64 * 1024];
  for (;;) {
    pollfd p = {lane.get(), POLLIN, 0};
    if (poll(&p, 1, 10000) == 0) {
      fprintf(stderr, "worker-lanes-fuzz: the lane is still open 10 s after the input\n");
      abort();
    }
    if (read(lane.get(), buffer, sizeof(buffer)) <= 0) break;
  }
  fixture.keepHandleOpen();
  return 0;
}
