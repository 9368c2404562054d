#include "native-thread.h"

#include <errno.h>
#include <pthread.h>

#include <memory>
#include <new>

namespace pyworker {

namespace {

void* threadMain(void* argument) {
  std::unique_ptr<kj::Function<void()>> body(static_cast<kj::Function<void()>*>(argument));
  (*body)();
  return nullptr;
}

}  // namespace

int startThread(size_t stackSize, kj::Function<void()> body) {
  pthread_attr_t attributes;
  int error = pthread_attr_init(&attributes);
  if (error != 0) return error;
  error = pthread_attr_setstacksize(&attributes, stackSize);
  if (error == 0) error = pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
  if (error == 0) {
    try {
      auto owned = std::make_unique<kj::Function<void()>>(kj::mv(body));
      pthread_t thread;
      error = pthread_create(&thread, &attributes, threadMain, owned.get());
      if (error == 0) owned.release();  // the thread owns it now
    } catch (const std::bad_alloc&) {
      error = ENOMEM;
    }
  }
  pthread_attr_destroy(&attributes);
  return error;
}

}  // namespace pyworker
