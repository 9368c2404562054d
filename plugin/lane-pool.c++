#include "lane-pool.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include <kj/debug.h>

namespace pyworker {

namespace {

constexpr size_t SCRATCH_WORDS = 8 * 1024 + 256;
// Room for an inline pwrite payload (below the shared-memory threshold, 32 KiB) and the rest
// of the call.

}  // namespace

LanePool::Lane::Lane(kj::AutoCloseFd socket)
    : stream(kj::mv(socket)), scratch(kj::heapArray<capnp::word>(SCRATCH_WORDS)) {
  memset(scratch.begin(), 0, scratch.asBytes().size());
}

LanePool::LanePool(int offers) : offers_(offers) {}

LanePool::Lease::~Lease() {
  if (!lane_) return;
  std::lock_guard<std::mutex> lock(pool_.mutex_);
  pool_.idle_.push_back(kj::mv(lane_));
}

LanePool::Lease LanePool::acquire() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!idle_.empty()) {
      auto lane = kj::mv(idle_.back());
      idle_.pop_back();
      return Lease(*this, kj::mv(lane));
    }
  }
  return Lease(*this, offerNewLane());
}

std::unique_ptr<LanePool::Lane> LanePool::offerNewLane() {
  int fds[2];
  KJ_SYSCALL(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds));
  kj::AutoCloseFd ours(fds[0]), theirs(fds[1]);
  char byte = 'L';
  iovec data = {&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr m{};
  m.msg_iov = &data;
  m.msg_iovlen = 1;
  m.msg_control = control;
  m.msg_controllen = sizeof(control);
  cmsghdr* c = CMSG_FIRSTHDR(&m);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  int fd = theirs.get();
  memcpy(CMSG_DATA(c), &fd, sizeof(int));
  ssize_t n;
  do {
    n = sendmsg(offers_, &m, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n != 1) {
    // The worker has exited (or closed its end): it takes no more lanes.
    kj::throwFatalException(KJ_EXCEPTION(DISCONNECTED, "the worker takes no new lane",
                                          strerror(errno)));
  }
  return std::make_unique<Lane>(kj::mv(ours));
}

}  // namespace pyworker
