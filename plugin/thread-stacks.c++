#include "thread-stacks.h"

#include <pthread.h>

#include <algorithm>
#include <system_error>

namespace pyworker {

size_t chooseThreadStack(std::optional<uint64_t> requested, size_t current) {
  if (requested) return static_cast<size_t>(*requested);
  return std::min(current, DEFAULT_THREAD_STACK);
}

ThreadStackChange setDefaultThreadStack(std::optional<uint64_t> requested) {
  pthread_attr_t attributes;
  if (int e = pthread_getattr_default_np(&attributes); e != 0) {
    throw std::system_error(e, std::generic_category(), "pthread_getattr_default_np");
  }
  size_t before = 0;
  int e = pthread_attr_getstacksize(&attributes, &before);
  size_t after = chooseThreadStack(requested, before);
  if (e == 0 && after != before) {
    e = pthread_attr_setstacksize(&attributes, after);
    if (e == 0) e = pthread_setattr_default_np(&attributes);
  }
  pthread_attr_destroy(&attributes);
  if (e != 0) throw std::system_error(e, std::generic_category(), "setting the thread stack size");
  return {before, after};
}

}  // namespace pyworker
