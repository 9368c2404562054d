#include "lane-offers.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <kj/debug.h>

namespace pyworker {

kj::AutoCloseFd offerNewLane(int offers) {
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
    n = sendmsg(offers, &m, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n != 1) {
    kj::throwFatalException(KJ_EXCEPTION(DISCONNECTED, "nobody takes new lanes",
                                          strerror(errno)));
  }
  return ours;
}

kj::Maybe<kj::AutoCloseFd> takeOfferedLane(int offers) {
  for (;;) {
    char byte = 0;
    iovec data = {&byte, 1};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
    msghdr m{};
    m.msg_iov = &data;
    m.msg_iovlen = 1;
    m.msg_control = control;
    m.msg_controllen = sizeof(control);
    ssize_t n = recvmsg(offers, &m, MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return nullptr;
    int fd = -1;
    for (cmsghdr* c = CMSG_FIRSTHDR(&m); c != nullptr; c = CMSG_NXTHDR(&m, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
          c->cmsg_len == CMSG_LEN(sizeof(int))) {
        memcpy(&fd, CMSG_DATA(c), sizeof(int));
      }
    }
    if (fd < 0) continue;
    kj::AutoCloseFd socket(fd);
    struct stat st;
    if (byte != 'L' || (m.msg_flags & MSG_CTRUNC) || fstat(fd, &st) < 0 ||
        !S_ISSOCK(st.st_mode)) {
      continue;
    }
    return kj::mv(socket);
  }
}

}  // namespace pyworker
