#include "lane-server.h"

#include "host-link.h"
#include "lane-offers.h"
#include "lane-stream.h"
#include "python-ref.h"
#include "rpc-limits.h"

#include <capnp/serialize.h>
#include <kj/debug.h>

#include <stdio.h>

#include <thread>

namespace pyworker {

namespace {

constexpr auto SPIN = std::chrono::microseconds(50);
// How long a lane thread that has just answered polls for the next call before it sleeps
// (lane-stream.c++ says why). The next request of a client at queue depth 1 comes that soon.

class PythonThread {
  // This thread's own Python thread state, for all its calls (each call's GilScope then only
  // takes the GIL). Kept when the thread ends, as the pool's threads keep theirs: a lane ends
  // when its worker does, and handing the state back could race with Py_FinalizeEx().
public:
  PythonThread() {
    PyGILState_Ensure();
    PyEval_SaveThread();
  }
};

}  // namespace

LaneServer::LaneServer(kj::AutoCloseFd offers, const Script& script, HostLink& host,
                       const HandleTable& handles, SharedData data)
    : offers_(kj::mv(offers)), callbacks_(script, host), handles_(handles), data_(data) {
  std::thread([this]() { takeLanes(); }).detach();
}

bool LaneServer::waitUntilIdle(std::chrono::milliseconds limit) const {
  auto until = std::chrono::steady_clock::now() + limit;
  while (busy_.load() > 0) {
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

void LaneServer::takeLanes() {
  for (;;) {
    KJ_IF_MAYBE(socket, takeOfferedLane(offers_.get())) {
      std::thread([this, fd = socket->release()]() { serve(kj::AutoCloseFd(fd)); }).detach();
    } else {
      return;
    }
  }
}

void LaneServer::serve(kj::AutoCloseFd socket) {
  PythonThread python;
  LaneStream lane(kj::mv(socket));
  auto scratch = newMessageScratch();
  try {
    for (;;) answer(lane, scratch);
  } catch (const LaneError& e) {
    // CLOSED is the normal end of a lane (the plugin dropped it, or nbdkit is gone).
    if (e.kind != LaneError::CLOSED) fprintf(stderr, "pyworker: lane: %s\n", e.what());
  } catch (const kj::Exception& e) {
    // The plugin sent what no plugin sends: this lane is of no further use.
    fprintf(stderr, "pyworker: lane: bad call: %s\n", e.getDescription().cStr());
  }
}

uint8_t* LaneServer::sharedRange(uint64_t offset, uint32_t length, uint32_t count) const {
  // The plugin names the range; a range outside the mapping is a plugin bug, not a script's.
  KJ_REQUIRE(length == count && offset <= data_.size && count <= data_.size - offset,
             "shared range outside the data memory", offset, count, data_.size);
  return data_.base + offset;
}

void LaneServer::answer(LaneStream& lane, kj::ArrayPtr<capnp::word> scratch) {
  auto words = lane.read(std::nullopt, SPIN);
  busy_++;
  KJ_DEFER(busy_--);
  capnp::FlatArrayMessageReader request(words, rpcReaderOptions());
  auto call = request.getRoot<rpc::LaneCall>();
  capnp::MallocMessageBuilder message(scratch);
  auto reply = message.initRoot<rpc::LaneReply>();

  HostCallCapture hostCalls;
  Outcome outcome = run(call, reply);
  outcome.fill(reply.initStatus());
  if (!hostCalls.calls().empty()) {
    auto list = reply.initHostCalls(hostCalls.calls().size());
    for (size_t i = 0; i < hostCalls.calls().size(); ++i) {
      auto& made = hostCalls.calls()[i];
      switch (made.kind) {
      case HostCall::DEBUG: list[i].setDebug(made.text); break;
      case HostCall::ERROR: list[i].setError(made.text); break;
      case HostCall::SHUTDOWN: list[i].setShutdown(); break;
      }
    }
  }
  lane.write(message);
}

Outcome LaneServer::run(rpc::LaneCall::Reader call, rpc::LaneReply::Builder reply) {
  // Returns before the reply is sent, so that this call's hold on the handle is gone by the
  // time the plugin can close it.
  uint32_t count = call.getCount();
  uint64_t offset = call.getOffset();
  uint32_t flags = call.getFlags();
  auto handle = handles_.find(call.getHandle());
  KJ_REQUIRE(handle != nullptr, "no open handle has this id", call.getHandle());
  const OpenHandle& h = *handle;
  Outcome outcome;
  switch (call.which()) {
  case rpc::LaneCall::PREAD: {
    uint8_t* buffer;
    if (call.hasShared()) {
      auto shared = call.getShared();
      buffer = sharedRange(shared.getOffset(), shared.getLength(), count);
    } else {
      buffer = reply.initData(count).begin();
    }
    outcome = callbacks_.pread(h, buffer, count, offset, flags);
    break;
  }
  case rpc::LaneCall::PWRITE: {
    const uint8_t* bytes;
    if (call.hasShared()) {
      auto shared = call.getShared();
      bytes = sharedRange(shared.getOffset(), shared.getLength(), count);
    } else {
      auto data = call.getData();  // read once: each get spends traversal budget
      KJ_REQUIRE(data.size() == count, "pwrite data and count differ", data.size(), count);
      bytes = data.begin();
    }
    outcome = callbacks_.pwrite(h, bytes, count, offset, flags);
    break;
  }
  case rpc::LaneCall::FLUSH:
    outcome = callbacks_.flush(h, flags);
    break;
  case rpc::LaneCall::TRIM:
    outcome = callbacks_.trim(h, count, offset, flags);
    break;
  case rpc::LaneCall::ZERO:
    outcome = callbacks_.zero(h, count, offset, flags);
    break;
  case rpc::LaneCall::CACHE:
    outcome = callbacks_.cache(h, count, offset, flags);
    break;
  case rpc::LaneCall::EXTENTS: {
    std::vector<ExtentValue> extents;
    outcome = callbacks_.extents(h, count, offset, flags, extents);
    if (outcome.ok()) {
      auto list = reply.initExtents(extents.size());
      for (size_t i = 0; i < extents.size(); ++i) {
        list[i].setOffset(extents[i].offset);
        list[i].setLength(extents[i].length);
        list[i].setType(extents[i].type);
      }
    }
    break;
  }
  case rpc::LaneCall::GET_SIZE: {
    int64_t size = 0;
    outcome = callbacks_.getSize(h, size);
    reply.setSize(size);
    break;
  }
  case rpc::LaneCall::BLOCK_SIZE: {
    BlockSize sizes;
    outcome = callbacks_.blockSize(h, sizes);
    reply.setMinimum(sizes.minimum);
    reply.setPreferred(sizes.preferred);
    reply.setMaximum(sizes.maximum);
    break;
  }
  case rpc::LaneCall::EXPORT_DESCRIPTION: {
    std::optional<std::string> description;
    outcome = callbacks_.exportDescription(h, description);
    if (description) {
      reply.setDescription(*description);
      reply.setHasDescription(true);
    }
    break;
  }
  case rpc::LaneCall::CLOSE:
    outcome = callbacks_.close(h);
    break;
  case rpc::LaneCall::QUERY: {
    int32_t value = 0;
    outcome = callbacks_.query(h, call.getQuery(), value);
    reply.setValue(value);
    break;
  }
  default:
    KJ_FAIL_REQUIRE("unknown lane call", static_cast<int>(call.which()));
  }
  return outcome;
}

}  // namespace pyworker
