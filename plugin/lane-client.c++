#include "lane-client.h"

#include <capnp/serialize.h>
#include <kj/debug.h>

#include "host-server.h"
#include "rpc-limits.h"

namespace pyworker {

namespace {

constexpr auto REPLY_SPIN = std::chrono::microseconds(50);
// How long an nbdkit thread polls for its lane call's reply before it sleeps (lane-stream.c++
// says why): a 4 KiB request's whole round trip fits in it.

}  // namespace

LaneClient::LaneClient(int offers, std::string identity)
    : lanes_(offers), identity_(kj::mv(identity)) {}

void LaneClient::call(kj::FunctionParam<void(rpc::LaneCall::Builder)> build,
                      kj::FunctionParam<void(rpc::LaneReply::Reader)> read,
                      std::optional<std::chrono::steady_clock::time_point> deadline,
                      LaneStream::LaterDeadline later) {
  std::optional<LanePool::Lease> lane;
  try {
    lane.emplace(lanes_.acquire());
  } catch (const kj::Exception& e) {
    // A worker that takes no new lane has exited (or closed its end).
    throw LaneError(LaneError::CLOSED, e.getDescription().cStr());
  }
  try {
    {
      capnp::MallocMessageBuilder message((*lane)->scratch);
      build(message.initRoot<rpc::LaneCall>());
      (*lane)->stream.write(message);
    }
    auto words = (*lane)->stream.read(deadline, REPLY_SPIN, later);
    try {
      capnp::FlatArrayMessageReader message(words, rpcReaderOptions());
      auto reply = message.getRoot<rpc::LaneReply>();
      for (auto hostCall : reply.getHostCalls()) replayHostCall(hostCall, identity_);
      read(reply);
    } catch (const kj::Exception& e) {
      throw LaneError(LaneError::MALFORMED, e.getDescription().cStr());
    }
  } catch (const LaneError&) {
    lane->discard();  // halfway through a call: of no further use
    throw;
  }
}

}  // namespace pyworker
