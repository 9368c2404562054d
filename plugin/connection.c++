#include "connection.h"

#include "script-outcome.h"

namespace pyworker {

Connection::Connection(bool readonly, ConnectionContext context, Binding binding)
    : readonly_(readonly), context_(kj::mv(context)), binding_(kj::mv(binding)) {}

Connection::Binding Connection::binding() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return binding_;
}

std::shared_ptr<WorkerInstance> Connection::laneCall(
    kj::FunctionParam<void(rpc::LaneCall::Builder, WorkerInstance&)> build,
    kj::FunctionParam<void(rpc::LaneReply::Reader)> read) {
  auto bound = binding();
  try {
    bound.instance->laneCall(
        [&](rpc::LaneCall::Builder call) {
          call.setHandle(bound.handleId);
          build(call, *bound.instance);
        },
        read);
  } catch (const WorkerLost&) {
    // The handle died with its worker: every later request would fail too.
    disconnectClient(true);
    throw;
  }
  return bound.instance;
}

void Connection::close() {
  auto bound = binding();
  bound.instance->releaseHandle(bound.handleId);
}

void Connection::remember(rpc::Query query, int32_t answer) {
  std::lock_guard<std::mutex> lock(mutex_);
  answers_[query] = answer;
}

void Connection::rememberSize(int64_t size) {
  std::lock_guard<std::mutex> lock(mutex_);
  size_ = size;
}

}  // namespace pyworker
