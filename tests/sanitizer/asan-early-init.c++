// Test-only, for sanitized builds: part of the library preloaded into nbdkit with the ASan
// runtime (tests/sanitizer/nbdkit).
//
// WARNING: a preloaded runtime is initialized after every library nbdkit links, so ASan starts
// lazily, on the first malloc. In nbdkit that malloc happens inside newlocale(), called by
// libp11-kit's constructor (through gnutls) with glibc's setlocale lock held; ASan's start-up
// calls dlerror(), whose message translation takes and releases that same lock, so newlocale()
// returns with the lock in a corrupt state. A later setlocale() or freelocale() then hangs:
// Py_Initialize() in nbdkit's python plugin, or libp11-kit's destructor when nbdkit exits
// (seen with GCC 12's libasan and glibc 2.36, Debian 12). This newlocale() stands in front of
// glibc's and starts ASan before the first call goes on.
//
// Built without instrumentation: it runs before ASan has mapped its shadow memory.

#include <dlfcn.h>
#include <locale.h>

#include <atomic>

extern "C" void __asan_init();

namespace {

using Newlocale = locale_t (*)(int, const char*, locale_t);
std::atomic<Newlocale> glibcNewlocale{nullptr};

}  // namespace

extern "C" locale_t newlocale(int categoryMask, const char* locale, locale_t base) {
  Newlocale next = glibcNewlocale.load(std::memory_order_acquire);
  if (next == nullptr) {
    __asan_init();  // Idempotent; here outside glibc's lock.
    next = reinterpret_cast<Newlocale>(dlsym(RTLD_NEXT, "newlocale"));
    glibcNewlocale.store(next, std::memory_order_release);
  }
  return next(categoryMask, locale, base);
}
