#include "lane-pool.h"

#include "lane-offers.h"

namespace pyworker {

LanePool::Lane::Lane(kj::AutoCloseFd socket)
    : stream(kj::mv(socket)), scratch(newMessageScratch()) {}

LanePool::LanePool(int offers) : offers_(offers) {}

LanePool::Lease::~Lease() {
  if (!lane_) return;
  std::lock_guard<std::mutex> lock(pool_.mutex_);
  pool_.idle_.push_back(kj::mv(lane_));
}

LanePool::Lease LanePool::acquire() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!idle_.empty()) {
      auto lane = kj::mv(idle_.back());
      idle_.pop_back();
      return Lease(*this, kj::mv(lane));
    }
  }
  return Lease(*this, newLane());
}

std::unique_ptr<LanePool::Lane> LanePool::newLane() {
  // DISCONNECTED when the worker has exited (or closed its end): it takes no more lanes.
  return std::make_unique<Lane>(offerNewLane(offers_));
}

}  // namespace pyworker
