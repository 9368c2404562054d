#pragma once
// For the seed generators: a stream that passes everything through and keeps a copy of what
// is written, so that a real conversation can be replayed byte for byte as a fuzz input.

#include <kj/async-io.h>

#include <string>

namespace pyworker::fuzz {

class RecordingStream final: public kj::AsyncIoStream {
  // Passes everything through and keeps a copy of what is written.
public:
  explicit RecordingStream(kj::AsyncIoStream& inner): inner(inner) {}
  std::string written;

  kj::Promise<size_t> tryRead(void* buffer, size_t minBytes, size_t maxBytes) override {
    return inner.tryRead(buffer, minBytes, maxBytes);
  }
  kj::Promise<void> write(const void* buffer, size_t size) override {
    written.append(static_cast<const char*>(buffer), size);
    return inner.write(buffer, size);
  }
  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override {
    for (auto piece : pieces) written.append(piece.asChars().begin(), piece.size());
    return inner.write(pieces);
  }
  kj::Promise<void> whenWriteDisconnected() override { return inner.whenWriteDisconnected(); }
  void shutdownWrite() override { inner.shutdownWrite(); }
  void abortRead() override { inner.abortRead(); }

private:
  kj::AsyncIoStream& inner;
};

}  // namespace pyworker::fuzz
