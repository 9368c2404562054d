#include "lane-pool.h"

#include "lane-offers.h"

namespace pyworker {

LanePool::Lane::Lane(kj::AutoCloseFd socket)
    : stream(kj::mv(socket)), scratch(newMessageScratch()) {}

LanePool::LanePool(int offers, size_t limit) : offers_(offers), limit_(limit) {}

LanePool::Lease::~Lease() {
  if (!lane_) return;
  std::lock_guard<std::mutex> lock(pool_.mutex_);
  pool_.idle_.push_back(kj::mv(lane_));
  pool_.returned_.notify_one();
}

void LanePool::Lease::discard() {
  if (!lane_) return;
  lane_.reset();
  pool_.forget();
}

void LanePool::forget() {
  std::lock_guard<std::mutex> lock(mutex_);
  --lanes_;
  returned_.notify_one();
}

size_t LanePool::lanes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return lanes_;
}

LanePool::Lease LanePool::acquire() {
  {
    std::unique_lock<std::mutex> lock(mutex_);
    returned_.wait(lock, [this]() { return !idle_.empty() || lanes_ < limit_; });
    if (!idle_.empty()) {
      auto lane = kj::mv(idle_.back());
      idle_.pop_back();
      return Lease(*this, kj::mv(lane));
    }
    ++lanes_;  // counted before it exists, so that no other caller overshoots the limit
  }
  try {
    // DISCONNECTED when the worker has exited (or closed its end): it takes no more lanes.
    return Lease(*this, std::make_unique<Lane>(offerNewLane(offers_)));
  } catch (...) {
    forget();
    throw;
  }
}

}  // namespace pyworker
