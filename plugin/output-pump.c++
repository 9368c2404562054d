#include "output-pump.h"

#include <errno.h>
#include <unistd.h>

namespace pyworker {

namespace {

constexpr size_t CHUNK = 4096;

void writeAll(const kj::byte* data, size_t size) {
  while (size > 0) {
    ssize_t n = write(STDERR_FILENO, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // stderr closed or full: the output is lost, never the worker.
    data += n;
    size -= static_cast<size_t>(n);
  }
}

kj::Promise<void> pumpFrom(kj::Own<kj::AsyncInputStream> stream, kj::Array<kj::byte> buffer) {
  auto& input = *stream;
  auto read = input.tryRead(buffer.begin(), 1, buffer.size());
  return read.then(
      [stream = kj::mv(stream), buffer = kj::mv(buffer)](size_t n) mutable -> kj::Promise<void> {
        if (n == 0) return kj::READY_NOW;
        writeAll(buffer.begin(), n);
        return pumpFrom(kj::mv(stream), kj::mv(buffer));
      });
}

}  // namespace

kj::Promise<void> pumpOutput(kj::LowLevelAsyncIoProvider& lowLevel, int pipeFd) {
  auto stream = lowLevel.wrapInputFd(pipeFd);
  return pumpFrom(kj::mv(stream), kj::heapArray<kj::byte>(CHUNK)).catch_([](kj::Exception&&) {});
}

}  // namespace pyworker
