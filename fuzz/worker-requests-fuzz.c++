// libFuzzer target: the worker's handling of requests. The input is what the plugin's end of a
// connection sends, raw bytes on the socket (Cap'n Proto RPC messages in the standard framing:
// bootstrap, calls on Worker, finish, release, ...); the worker
// reads them with its reader limits and runs the real servers around a real script
// (worker-fixture.h). Whatever the bytes, the worker must answer or hang up: a crash, a
// sanitizer report, or a callback that never returns is a bug.

#include <stdint.h>

#include "worker-fixture.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto& fixture = pyworker::fuzz::WorkerFixture::get();
  auto pipe = fixture.io().provider->newTwoWayPipe();
  auto& plugin = *pipe.ends[1];
  // The plugin's side: sends the input, then hangs up; what the worker answers is drained.
  auto sent = plugin.write(data, size)
                  .then([&plugin]() { plugin.shutdownWrite(); })
                  .eagerlyEvaluate([](kj::Exception&&) {});
  auto buffer = kj::heapArray<kj::byte>(64 * 1024);
  kj::Function<kj::Promise<void>()> drain = [&]() -> kj::Promise<void> {
    return plugin.tryRead(buffer.begin(), 1, buffer.size()).then([&](size_t n) {
      if (n == 0) return kj::Promise<void>(kj::READY_NOW);
      return drain();
    });
  };
  auto drained = drain().eagerlyEvaluate([](kj::Exception&&) {});
  fixture.serve(*pipe.ends[0]);
  return 0;
}
