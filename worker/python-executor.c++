#include "python-executor.h"

#include "native-thread.h"
#include "python-ref.h"

#include <kj/debug.h>


namespace pyworker {

PythonExecutor::PythonExecutor(size_t maxThreads): maxThreads(maxThreads) {}

PythonExecutor::~PythonExecutor() {
  std::unique_lock lock(mutex);
  stopping = true;
  wake.notify_all();
  ended.wait(lock, [this]() { return threads == 0; });
}

void PythonExecutor::submit(kj::Function<void()> job) {
  std::unique_lock lock(mutex);
  queue.push_back(kj::mv(job));
  ++pending;
  if (queue.size() > idle && threads < maxThreads) {
    // More jobs waiting than threads waiting for jobs (an idle thread that was notified but
    // has not woken yet still counts as idle, and its job is still queued): grow, so that a
    // sleeping callback does not hold up the others. Past the limit, jobs wait their turn.
    ++threads;
    int error = startThread(PYTHON_STACK_SIZE, [this]() { threadMain(); });
    if (error == 0) return;
    // No thread to be had (memory= exhausted): the job waits for a running thread; with none
    // at all it fails now rather than wait for ever.
    --threads;
    if (threads == 0) {
      queue.pop_back();
      --pending;
      KJ_FAIL_SYSCALL("starting a thread for the script", error);
    }
    wake.notify_one();
  } else {
    wake.notify_one();
  }
}

bool PythonExecutor::stop(std::chrono::milliseconds limit) {
  std::unique_lock lock(mutex);
  stopping = true;
  wake.notify_all();
  return ended.wait_for(lock, limit, [this]() { return threads == 0; });
}

bool PythonExecutor::waitUntilIdle(std::chrono::milliseconds limit) {
  std::unique_lock lock(mutex);
  return idleChanged.wait_for(lock, limit, [this]() { return pending == 0; });
}

size_t PythonExecutor::busy() const {
  std::unique_lock lock(mutex);
  return pending;
}

void PythonExecutor::threadMain() {
  // Give this thread its Python thread state once (the gilstate counter stays at 1), so each
  // job's GilScope only takes the GIL instead of creating and destroying a thread state.
  PyGILState_Ensure();
  PyEval_SaveThread();

  std::unique_lock lock(mutex);
  for (;;) {
    ++idle;
    wake.wait(lock, [this]() { return !queue.empty() || stopping; });
    --idle;
    if (queue.empty()) {
      // Stopping. The thread keeps its Python thread state: it may not take the GIL now.
      --threads;
      ended.notify_all();
      return;
    }
    auto job = kj::mv(queue.front());
    queue.pop_front();
    lock.unlock();
    job();
    {
      // Destroy the job (and whatever it captured) before counting it done.
      auto done = kj::mv(job);
    }
    lock.lock();
    if (--pending == 0) idleChanged.notify_all();
  }
}

}  // namespace pyworker
