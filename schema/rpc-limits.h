#pragma once
// The Cap'n Proto reader limits of the protocol, part of the contract: plugin and worker read
// every message with the same ones, since a receiver with lower limits than its sender drops the
// whole connection. The fuzz targets use them too, so that they see what the real ends accept.

#include <capnp/message.h>

#include <cstddef>
#include <cstdint>

namespace pyworker {

constexpr uint64_t TRAVERSAL_LIMIT_WORDS = 8 * 1024 * 1024 + 64 * 1024;
// A 64 MiB Data field (nbdkit's largest request) plus the message around it. capnp's default
// is exactly 64 MiB, which that message would exceed.

constexpr int NESTING_LIMIT = 6;
// What the deepest message of the protocol needs, rpc.capnp's envelope included: list_exports'
// reply (Message -> Return -> Payload -> results -> exports -> Export -> name); requests need 5
// (open's ConnectionContext). capnp's default of 64 would only be stack depth for a peer to
// spend on recursive traversals. tests/rpc-limits-test.c++ checks that 6 suffices and 5 does not.

constexpr size_t MAX_EXTENTS = 1024 * 1024;
// The most extents one LaneReply carries: nbdkit keeps no more per request (its MAX_EXTENTS),
// so the worker sends no more (it shapes a longer answer as nbdkit would: shapeExtents() in worker/value-conversions.h),
// and the plugin treats more as a lying worker. 24 MiB of message at most.

inline capnp::ReaderOptions rpcReaderOptions() {
  capnp::ReaderOptions options;
  options.traversalLimitInWords = TRAVERSAL_LIMIT_WORDS;
  options.nestingLimit = NESTING_LIMIT;
  return options;
}

}  // namespace pyworker
