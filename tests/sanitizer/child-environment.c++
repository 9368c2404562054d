// Test-only, for sanitized builds: part of the library preloaded into nbdkit with the ASan
// runtime (tests/sanitizer/nbdkit). By the time constructors run, the dynamic loader has used
// LD_PRELOAD and ASan has read its options (from /proc/self/environ, which setenv does not
// change); what is left in nbdkit's environment is only what its children inherit:
// - no LD_PRELOAD: the worker is an ASan executable of its own, and --run commands and the
//   clients they start (nbdinfo, nbdsh, qemu-img...) must run as they normally do;
// - ASAN_OPTIONS from PYWORKER_CHILD_ASAN_OPTIONS when set (the worker's, see the wrapper).

#include <cstdlib>

namespace {

[[gnu::constructor]] void setChildEnvironment() {
  unsetenv("LD_PRELOAD");
  if (const char* options = getenv("PYWORKER_CHILD_ASAN_OPTIONS")) {
    setenv("ASAN_OPTIONS", options, 1);
    unsetenv("PYWORKER_CHILD_ASAN_OPTIONS");
  }
}

}  // namespace
