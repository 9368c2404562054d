// The worker's end of the lanes: takes the lanes the plugin offers on --lane-fd and serves
// each on a thread of its own, which reads a LaneCall (a connection's callback), runs the
// script's callback itself (no hop to another thread) and writes the LaneReply. See "Lanes"
// in schema/pyworker.capnp. The plugin bounds how many lanes a worker has
// (plugin/lane-pool.h); a lane that finds no thread still gets answers (takeLanes()).
#pragma once

#include "handle-callbacks.h"
#include "open-handle.h"

#include <kj/io.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace pyworker {

class LaneStream;

struct SharedData {
  // The data memory shared with the plugin (empty if the plugin gave none): request payloads
  // that do not travel inside the lane messages.
  uint8_t* base = nullptr;
  size_t size = 0;
};

class LaneServer {
public:
  LaneServer(kj::AutoCloseFd offers, const Script& script, HostLink& host,
             HandleTable& handles, SharedData data);
  // Starts the thread that takes new lanes. Lives as long as the process (its threads are
  // detached and only end with their sockets).
  KJ_DISALLOW_COPY(LaneServer);

  bool waitUntilIdle(std::chrono::milliseconds limit) const;
  // Whether, within `limit`, no lane is inside a callback and no lane thread is still
  // starting (one would take the GIL: not while the interpreter finalizes).

private:
  void takeLanes();
  int startServing(std::unique_ptr<LaneStream>& lane);
  // 0 once a thread serves `lane` (which it then owns), else the errno and `lane` is kept.
  bool refuse(LaneStream& lane, int error);
  void serve(std::unique_ptr<LaneStream> lane);
  std::chrono::microseconds answer(LaneStream& lane, kj::ArrayPtr<capnp::word> scratch,
                                   std::chrono::microseconds spin);
  // One call, read after polling for it up to `spin`; returns how long to poll for the next.
  Outcome run(rpc::LaneCall::Reader call, rpc::LaneReply::Builder reply);
  uint8_t* sharedRange(uint64_t offset, uint32_t length, uint32_t count) const;

  kj::AutoCloseFd offers_;
  HandleCallbacks callbacks_;
  HandleTable& handles_;
  SharedData data_;
  std::atomic<int> busy_{0};
  std::atomic<int> starting_{0};  // lane threads not yet past their Python thread state
};

}  // namespace pyworker
