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

struct PumpState {
  kj::Own<kj::AsyncInputStream> stream;
  kj::Array<kj::byte> buffer;
  std::string prefix;
  std::string partial;  // a line not finished yet

  ~PumpState() {
    // The pump is handed from the config-phase loop to the serving loop (or stopped): what the
    // worker wrote without a newline so far is not lost.
    if (!partial.empty()) emitLines(nullptr, 0, true);
  }

  void emitLines(const kj::byte* data, size_t size, bool end) {
    partial.append(reinterpret_cast<const char*>(data), size);
    size_t start = 0;
    for (size_t newline; (newline = partial.find('\n', start)) != std::string::npos;
         start = newline + 1) {
      std::string line = prefix + partial.substr(start, newline + 1 - start);
      writeAll(reinterpret_cast<const kj::byte*>(line.data()), line.size());
    }
    partial.erase(0, start);
    if ((end && !partial.empty()) || partial.size() > CHUNK) {
      // A very long line, or the last one without a newline: out it goes anyway.
      std::string line = prefix + partial + "\n";
      writeAll(reinterpret_cast<const kj::byte*>(line.data()), line.size());
      partial.clear();
    }
  }
};

kj::Promise<void> pumpFrom(kj::Own<PumpState> state) {
  auto& s = *state;
  return s.stream->tryRead(s.buffer.begin(), 1, s.buffer.size())
      .then([state = kj::mv(state)](size_t n) mutable -> kj::Promise<void> {
        state->emitLines(state->buffer.begin(), n, n == 0);
        if (n == 0) return kj::READY_NOW;
        return pumpFrom(kj::mv(state));
      });
}

}  // namespace

kj::Promise<void> pumpOutput(kj::LowLevelAsyncIoProvider& lowLevel, int pipeFd,
                             std::string prefix) {
  auto state = kj::heap<PumpState>();
  state->stream = lowLevel.wrapInputFd(pipeFd);
  state->buffer = kj::heapArray<kj::byte>(CHUNK);
  state->prefix = kj::mv(prefix);
  return pumpFrom(kj::mv(state)).catch_([](kj::Exception&&) {});
}

}  // namespace pyworker
