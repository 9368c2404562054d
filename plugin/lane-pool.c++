#include "lane-pool.h"

#include "lane-offers.h"

#include <sys/socket.h>

#include <kj/debug.h>

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
  pool_.forget(lane_.get());
  lane_.reset();  // closed only once hangUp() can no longer see it
}

void LanePool::forget(Lane* discarded) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (discarded) existing_.erase(discarded);
  --lanes_;
  returned_.notify_one();
}

void LanePool::track(Lane* lane) {
  existing_.insert(lane);
  if (hungUp_) shutdown(lane->stream.fd(), SHUT_RDWR);
}

void LanePool::hangUp() {
  std::lock_guard<std::mutex> lock(mutex_);
  hungUp_ = true;
  for (Lane* lane : existing_) shutdown(lane->stream.fd(), SHUT_RDWR);
  returned_.notify_all();
}

size_t LanePool::lanes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return lanes_;
}

LanePool::Lease LanePool::acquire() {
  {
    std::unique_lock<std::mutex> lock(mutex_);
    returned_.wait(lock, [this]() { return hungUp_ || !idle_.empty() || lanes_ < limit_; });
    if (hungUp_) {
      throw kj::Exception(kj::Exception::Type::DISCONNECTED, __FILE__, __LINE__,
                          kj::str("the worker is gone: its lanes are shut down"));
    }
    if (!idle_.empty()) {
      auto lane = kj::mv(idle_.back());
      idle_.pop_back();
      return Lease(*this, kj::mv(lane));
    }
    ++lanes_;  // counted before it exists, so that no other caller overshoots the limit
  }
  std::unique_ptr<Lane> lane;
  try {
    // DISCONNECTED when the worker has exited (or closed its end): it takes no more lanes.
    lane = std::make_unique<Lane>(offerNewLane(offers_));
  } catch (...) {
    forget(nullptr);
    throw;
  }
  std::lock_guard<std::mutex> lock(mutex_);
  track(lane.get());
  return Lease(*this, kj::mv(lane));
}

}  // namespace pyworker
