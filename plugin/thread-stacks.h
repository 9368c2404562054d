#pragma once
// The stacks of the threads nbdkit starts: its per-connection request threads (16 by default)
// and each connection's own. glibc gives a thread RLIMIT_STACK (usually 8 MiB) and keeps only
// 40 MiB of freed stacks for reuse, so with 8 MiB stacks most of a connection's threads get a
// fresh mapping and unmap it at disconnect (page faults, TLB shootdowns): measured at ~400 µs
// of nbdkit's CPU per connection on two cores, a third of what a short connection costs.
// Under pyworker none of those threads runs Python (the interpreter, which needs deep stacks,
// is in the worker), so they can have stacks that glibc keeps.

#include <cstddef>
#include <cstdint>
#include <optional>

namespace pyworker {

constexpr size_t DEFAULT_THREAD_STACK = 1024 * 1024;
// Two connections' 17 threads fit in glibc's stack cache; 8x musl's default (128 KiB), on
// which nbdkit and its filters run.

size_t chooseThreadStack(std::optional<uint64_t> requested, size_t current);
// thread-stack= if given; else DEFAULT_THREAD_STACK, unless the current default is smaller
// already (a lower `ulimit -s` is kept).

struct ThreadStackChange {
  size_t before;
  size_t after;
};

ThreadStackChange setDefaultThreadStack(std::optional<uint64_t> requested);
// Makes chooseThreadStack()'s answer the stack of every thread this process starts from now on
// without a size of its own (pthread_setattr_default_np). Throws std::system_error.

}  // namespace pyworker
