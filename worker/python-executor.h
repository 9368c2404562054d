// A growing pool of native threads that run Python jobs, so that the RPC callbacks of several
// connections (preconnect ... open, close) really run at once; the connections' other calls
// run on lane threads (lane-server.h).
// The event-loop thread runs only the config-phase callbacks itself (nothing else happens
// then); the others it hands here and waits on a promise.
#pragma once

#include <kj/async.h>
#include <kj/function.h>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>

namespace pyworker {

class PythonExecutor {
public:
  explicit PythonExecutor(size_t maxThreads = 64);
  PythonExecutor(const PythonExecutor&) = delete;
  PythonExecutor& operator=(const PythonExecutor&) = delete;
  ~PythonExecutor();
  // Waits for the queued jobs and lets the threads end. The worker itself never gets here (it
  // ends with exit()/_exit(), maybe with a callback hung); tests do.

  template <typename T>
  kj::Promise<T> run(kj::Function<T()> job);
  // Runs `job` on a pool thread (which holds no GIL on entry: the job takes it). The promise
  // belongs to the calling thread's event loop. A C++ exception from the job rejects it.

  void submit(kj::Function<void()> job);
  // Fire and forget; exceptions escaping `job` abort, so catch inside. Throws kj::Exception
  // (and drops `job`) when no pool thread exists and none can be started (memory=).

  size_t busy() const;
  // Jobs queued or running. Zero means no thread is inside the script right now.

  bool waitUntilIdle(std::chrono::milliseconds limit);
  bool stop(std::chrono::milliseconds limit);
  // Lets every thread end (a job still queued runs first) and waits up to `limit` for them:
  // whether none is left. Before Py_FinalizeEx: a thread still starting would meet the
  // finalizing interpreter in PyGILState_Ensure(), where CPython ends it with pthread_exit()
  // (which AddressSanitizer takes for a stack overflow).
  // Whether busy() reached zero within `limit`. A job's reply can reach the plugin (and the
  // plugin hang up) a moment before the pool thread has counted the job done.

private:
  void threadMain();

  mutable std::mutex mutex;
  std::condition_variable wake;
  std::condition_variable ended;
  std::condition_variable idleChanged;
  std::deque<kj::Function<void()>> queue;
  size_t maxThreads;
  size_t threads = 0;
  size_t idle = 0;
  size_t pending = 0;
  bool stopping = false;
};

template <typename T>
kj::Promise<T> PythonExecutor::run(kj::Function<T()> job) {
  auto paf = kj::newPromiseAndCrossThreadFulfiller<T>();
  submit([job = kj::mv(job), fulfiller = kj::mv(paf.fulfiller)]() mutable {
    KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() {
      if constexpr (std::is_void_v<T>) {
        job();
        fulfiller->fulfill();
      } else {
        fulfiller->fulfill(job());
      }
    })) {
      fulfiller->reject(kj::mv(*exception));
    }
  });
  return kj::mv(paf.promise);
}

}  // namespace pyworker
