#include "lane-server.h"

#include "host-link.h"
#include "lane-offers.h"
#include "lane-stream.h"
#include "native-thread.h"
#include "python-ref.h"
#include "rpc-limits.h"

#include <capnp/serialize.h>
#include <kj/debug.h>

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

#include <memory>
#include <thread>
#include <vector>

namespace pyworker {

namespace {

constexpr auto SPIN = std::chrono::microseconds(50);
// How long a lane thread that has just answered a data call polls for the next call before it
// sleeps (lane-stream.c++ says why). The next request of a client at queue depth 1 comes that
// soon.

bool spinsAfter(rpc::LaneCall::Which call) {
  // Only after the calls a client's requests make. After open, close and the questions nbdkit
  // asks while it sets a connection up, the CPU is better left to nbdkit, which is busy
  // starting that connection's threads or ending it: measured with connect, one read,
  // disconnect in a loop on two cores, 0.84 of in-process with a spin after every call and
  // 0.90-0.93 without these.
  switch (call) {
  case rpc::LaneCall::PREAD:
  case rpc::LaneCall::PWRITE:
  case rpc::LaneCall::FLUSH:
  case rpc::LaneCall::TRIM:
  case rpc::LaneCall::ZERO:
  case rpc::LaneCall::CACHE:
  case rpc::LaneCall::EXTENTS:
    return true;
  default:
    return false;
  }
}

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
                       HandleTable& handles, SharedData data)
    : offers_(kj::mv(offers)), callbacks_(script, host), handles_(handles), data_(data) {
  int error = startThread(SMALL_STACK_SIZE, [this]() { takeLanes(); });
  if (error != 0) KJ_FAIL_SYSCALL("starting the lane thread", error);
}

bool LaneServer::waitUntilIdle(std::chrono::milliseconds limit) const {
  auto until = std::chrono::steady_clock::now() + limit;
  while (busy_.load() > 0 || starting_.load() > 0) {
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

void LaneServer::takeLanes() {
  // Each lane gets a thread when it is offered. When none can be started (threads or address
  // space exhausted: memory= too small for this many requests in flight), the lane waits here
  // and each call it brings tries again; a call that still finds no thread is answered with
  // ENOMEM without running the script, and the lane stays usable.
  std::vector<std::unique_ptr<LaneStream>> waiting;
  std::vector<pollfd> watched;
  for (;;) {
    watched.assign(1, pollfd{offers_.get(), POLLIN, 0});
    for (auto& lane : waiting) watched.push_back(pollfd{lane->fd(), POLLIN, 0});
    if (poll(watched.data(), watched.size(), -1) < 0) {
      if (errno == EINTR) continue;
      fprintf(stderr, "pyworker: lanes: poll: %s\n", strerror(errno));
      return;
    }
    for (size_t i = waiting.size(); i-- > 0;) {
      if (watched[i + 1].revents == 0) continue;
      int error = startServing(waiting[i]);
      if (error == 0 || !refuse(*waiting[i], error)) waiting.erase(waiting.begin() + i);
    }
    if (watched[0].revents != 0) {
      KJ_IF_MAYBE(socket, takeOfferedLane(offers_.get())) {
        try {
          auto lane = std::make_unique<LaneStream>(kj::mv(*socket));
          if (startServing(lane) != 0) waiting.push_back(kj::mv(lane));
        } catch (const std::bad_alloc&) {
          // Not even the lane's buffer: dropping it is all that is left (the plugin then
          // takes the worker for a liar, and a new one comes).
          fprintf(stderr, "pyworker: lanes: out of memory for a new lane\n");
        }
      } else {
        return;  // the plugin is gone
      }
    }
  }
}

int LaneServer::startServing(std::unique_ptr<LaneStream>& lane) {
  // The lane is the new thread's only once the thread exists.
  LaneStream* handed = lane.get();
  starting_++;
  int error = startThread(PYTHON_STACK_SIZE,
                          [this, handed]() { serve(std::unique_ptr<LaneStream>(handed)); });
  if (error == 0) {
    lane.release();
  } else {
    starting_--;
  }
  return error;
}

bool LaneServer::refuse(LaneStream& lane, int error) {
  // Answers the lane's call without running it. False when the lane has ended.
  try {
    auto words = lane.read(std::nullopt, std::chrono::microseconds(0));
    capnp::FlatArrayMessageReader request(words, rpcReaderOptions());
    request.getRoot<rpc::LaneCall>();
    capnp::MallocMessageBuilder message;
    Outcome outcome;
    outcome.error = ENOMEM;
    outcome.message = std::string("pyworker: the worker could not start a thread for this "
                                  "request (") + strerror(error) +
                      "): every request in flight needs one; memory= may be too small";
    outcome.fill(message.initRoot<rpc::LaneReply>().initStatus());
    lane.write(message);
    return true;
  } catch (const LaneError& e) {
    if (e.kind != LaneError::CLOSED) fprintf(stderr, "pyworker: lane: %s\n", e.what());
  } catch (const kj::Exception& e) {
    fprintf(stderr, "pyworker: lane: bad call: %s\n", e.getDescription().cStr());
  } catch (const std::bad_alloc&) {
    fprintf(stderr, "pyworker: lane: out of memory answering a call it has no thread for\n");
  }
  return false;
}

void LaneServer::serve(std::unique_ptr<LaneStream> owned) {
  PythonThread python;
  starting_--;
  LaneStream& lane = *owned;
  try {
    auto scratch = newMessageScratch();
    auto spin = SPIN;
    for (;;) spin = answer(lane, scratch, spin);
  } catch (const std::bad_alloc&) {
    // Outside the script (whose MemoryError is its request's failure): the lane ends.
    fprintf(stderr, "pyworker: lane: out of memory\n");
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

std::chrono::microseconds LaneServer::answer(LaneStream& lane,
                                             kj::ArrayPtr<capnp::word> scratch,
                                             std::chrono::microseconds spin) {
  auto words = lane.read(std::nullopt, spin);
  busy_++;
  KJ_DEFER(busy_--);
  capnp::FlatArrayMessageReader request(words, rpcReaderOptions());
  auto call = request.getRoot<rpc::LaneCall>();
  capnp::MallocMessageBuilder message(scratch);
  auto reply = message.initRoot<rpc::LaneReply>();

  HostCallCapture hostCalls;
  Outcome outcome = run(call, reply);
  auto next = spinsAfter(call.which()) ? SPIN : std::chrono::microseconds(0);
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
  return next;
}

Outcome LaneServer::run(rpc::LaneCall::Reader call, rpc::LaneReply::Builder reply) {
  // Returns before the reply is sent, so that this call's hold on the handle is gone by the
  // time the plugin can close it.
  if (call.isOpen()) {
    std::shared_ptr<OpenHandle> opened;
    Outcome outcome = callbacks_.open(call.getReadonly(),
                                      ConnectionContext::from(call.getContext()), opened);
    if (opened) reply.setHandleId(handles_.add(kj::mv(opened)));
    return outcome;
  }
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
    handles_.take(call.getHandle());  // gone with this call's hold on it
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
