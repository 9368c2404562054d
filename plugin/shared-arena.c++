#include "shared-arena.h"

#include <kj/debug.h>

namespace pyworker {

SharedArena::SharedArena(kj::byte* base, size_t size, size_t unit)
    : base_(base), size_(size), unit_(unit), used_(size / unit, false) {
  KJ_REQUIRE(unit > 0 && size % unit == 0);
}

SharedArena::Lease SharedArena::lease(size_t bytes) {
  size_t units = (bytes + unit_ - 1) / unit_;
  if (units == 0) units = 1;
  std::lock_guard<std::mutex> lock(mutex_);
  // First fit: requests are few at a time (nbdkit's threads), the scan is short.
  size_t run = 0;
  for (size_t i = 0; i < used_.size(); ++i) {
    run = used_[i] ? 0 : run + 1;
    if (run == units) {
      size_t first = i + 1 - units;
      for (size_t j = first; j <= i; ++j) used_[j] = true;
      Lease lease;
      lease.arena_ = this;
      lease.offset_ = first * unit_;
      lease.units_ = units;
      return lease;
    }
  }
  return {};
}

void SharedArena::giveBack(uint64_t offset, size_t units) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (size_t j = offset / unit_; j < offset / unit_ + units; ++j) used_[j] = false;
}

SharedArena::Lease::Lease(Lease&& other) noexcept
    : arena_(other.arena_), offset_(other.offset_), units_(other.units_) {
  other.arena_ = nullptr;
}

SharedArena::Lease& SharedArena::Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    if (arena_) arena_->giveBack(offset_, units_);
    arena_ = other.arena_;
    offset_ = other.offset_;
    units_ = other.units_;
    other.arena_ = nullptr;
  }
  return *this;
}

SharedArena::Lease::~Lease() {
  if (arena_) arena_->giveBack(offset_, units_);
}

kj::byte* SharedArena::Lease::data() const { return arena_->base_ + offset_; }

}  // namespace pyworker
