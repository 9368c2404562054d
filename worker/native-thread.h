// Detached threads with a stack size of our choosing, and thread creation that fails with an
// errno instead of std::thread's std::system_error (which, thrown where nothing catches it,
// ends the worker). Why the sizes: under memory= (RLIMIT_AS) a thread's whole stack counts,
// touched or not, and glibc's default is 8 MiB.
#pragma once

#include <kj/function.h>

#include <cstddef>

namespace pyworker {

constexpr size_t PYTHON_STACK_SIZE = 4 << 20;
// For threads that run the script. Measured with Python 3.11 at the default recursion limit
// (1000): the deepest C recursion found (a sort key function calling sorted() again, 485
// levels before RecursionError) needs 2.5 MiB; plain Python recursion, repr/json/pickle of
// nested lists and __str__/__init__ chains need under 512 KiB. nbdkit's own threads have
// 8 MiB: a script that raises the recursion limit far may need that.

constexpr size_t SMALL_STACK_SIZE = 256 << 10;
// For threads that never run Python (they only wait on sockets), with room for sanitizers.

int startThread(size_t stackSize, kj::Function<void()> body);
// Starts a detached thread running `body`; 0, or the errno (EAGAIN: no memory or thread
// left) with `body` not run. `body` must not throw.

}  // namespace pyworker
