// One end of a lane (see "Lanes" in pyworker.capnp): a stream socket that carries one framed
// Cap'n Proto message at a time each way. Shared by plugin and worker, the framing being part
// of their contract. Reads reuse one buffer per lane, so the hot path allocates nothing.
#pragma once

#include <capnp/message.h>
#include <kj/array.h>
#include <kj/io.h>

#include <chrono>
#include <cstddef>
#include <functional>
#include <optional>
#include <stdexcept>

#include "rpc-limits.h"

namespace pyworker {

class LaneError : public std::runtime_error {
public:
  enum Kind {
    CLOSED,     // the other end is gone (end of file, connection reset): it died or hung up
    TIMED_OUT,  // nothing came before the deadline
    MALFORMED,  // not one well-framed message within the size limit
  };
  LaneError(Kind kind, const char* what) : std::runtime_error(what), kind(kind) {}
  Kind kind;
};

kj::Array<capnp::word> newMessageScratch();
// Zeroed room for the first segment of the messages one side builds for a lane, reused for
// every message (MallocMessageBuilder zeroes it again after each): a call or reply with an
// inline payload below the shared-memory threshold (32 KiB) fits, so the hot path allocates
// nothing.

class LaneStream {
public:
  static constexpr size_t MAX_MESSAGE_WORDS = TRAVERSAL_LIMIT_WORDS;
  // A 64 MiB payload (nbdkit's largest request) inline plus the message around it: only when
  // the shared data memory is full. Read with rpcReaderOptions(), as the RPC connections.

  explicit LaneStream(kj::AutoCloseFd socket);
  KJ_DISALLOW_COPY(LaneStream);

  int fd() const { return socket_.get(); }

  void write(capnp::MessageBuilder& message);
  // The whole message, or LaneError CLOSED.

  using LaterDeadline =
      std::function<std::optional<std::chrono::steady_clock::time_point>()>;

  kj::ArrayPtr<const capnp::word> read(std::optional<std::chrono::steady_clock::time_point>
                                           deadline, std::chrono::microseconds spin,
                                       const LaterDeadline& later = nullptr);
  // The next message, valid until the next read(). Waits until `deadline` (none: for ever);
  // first polls for up to `spin` without sleeping, when no other thread of this process is
  // spinning already (see lane-stream.c++: why). Once `deadline` has passed, `later` (if
  // given) may name a new one and the wait goes on (the plugin's pdb=on pause). Throws
  // LaneError.

private:
  bool waitReadable(std::optional<std::chrono::steady_clock::time_point> deadline,
                    std::chrono::microseconds spin);
  size_t receive(kj::byte* into, size_t room);
  // One read: how many bytes came (at least 1), or throws CLOSED.

  kj::AutoCloseFd socket_;
  kj::Array<capnp::word> buffer_;
  // Messages up to its size are read into it; a larger one gets an array of its own, freed
  // by the next read.
  kj::Array<capnp::word> large_;
};

}  // namespace pyworker
