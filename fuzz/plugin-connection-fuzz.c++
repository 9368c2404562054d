// libFuzzer target: whatever a worker writes on its connection to the plugin, as raw bytes:
// Host calls (debug, error, shutdown), the answer to the plugin's bootstrap question, junk.
// They are read by the plugin's real RpcConnection (reader limits, BoundedMessageStream, the
// flow limit, HostServer), nbdkit's logging stubbed. The plugin must answer or cut the worker
// off; a crash, a sanitizer report or a connection that never ends is a bug.

#include <stdint.h>
#include <sys/socket.h>

#include <kj/async-io.h>
#include <kj/debug.h>

#include "rpc-connection.h"

namespace {

struct Loop {
  kj::AsyncIoContext io = kj::setupAsyncIo();
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Loop loop;
  auto& lowLevel = *loop.io.lowLevelProvider;
  int fds[2];
  KJ_SYSCALL(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds));
  static pyworker::BreakpointPause pause(true);  // the serving connection's, pdb=on
  pyworker::RpcConnection connection(lowLevel, kj::AutoCloseFd(fds[0]), "pyworker[fuzz]", 0,
                                     &pause);
  auto worker = lowLevel.wrapSocketFd(kj::AutoCloseFd(fds[1]),
                                      kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
  // The worker's side: sends the input, then hangs up; what the plugin answers is drained.
  auto sent = worker->write(data, size)
                  .then([&]() { worker->shutdownWrite(); })
                  .eagerlyEvaluate([](kj::Exception&&) {});
  auto buffer = kj::heapArray<kj::byte>(64 * 1024);
  kj::Function<kj::Promise<void>()> drain = [&]() -> kj::Promise<void> {
    return worker->tryRead(buffer.begin(), 1, buffer.size()).then([&](size_t n) {
      if (n == 0) return kj::Promise<void>(kj::READY_NOW);
      return drain();
    });
  };
  auto drained = drain().eagerlyEvaluate([](kj::Exception&&) {});
  connection.onDisconnect().wait(loop.io.waitScope);
  return 0;
}
