#pragma once
// The worker's system-call filter (sandbox=on): a classic BPF program for seccomp that refuses,
// with EPERM rather than a kill (the script gets a PermissionError it can log), what no
// storage script needs and what would let it reach beyond its worker: see the README's
// "Sandbox" section for the list and the reason for each.

#include <linux/filter.h>

#include <string>
#include <vector>

namespace pyworker {

struct SeccompOptions {
  bool network = true;
  // false (sandbox-net=off): socket() is refused too, for every address family; socketpair()
  // stays (pipes between the script's own threads and processes).
};

std::vector<sock_filter> buildSeccompFilter(const SeccompOptions& options);
// x86_64 only: system calls of any other ABI (i386 through int 0x80, x32) are refused; clone3
// fails with ENOSYS (its flags are in memory a filter cannot read: glibc then uses clone,
// whose namespace flags are checked); clone with a CLONE_NEW* flag fails with EPERM.

void installSeccompFilter(const std::vector<sock_filter>& program);
// PR_SET_NO_NEW_PRIVS, then the filter for every thread of the process (TSYNC). Throws a
// std::runtime_error saying which step failed.

}  // namespace pyworker
