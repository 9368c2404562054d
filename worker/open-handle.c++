#include "open-handle.h"

namespace pyworker {

uint64_t HandleTable::add(std::shared_ptr<OpenHandle> handle) {
  std::lock_guard<std::mutex> lock(mutex_);
  uint64_t id = nextId_++;
  handles_.emplace(id, handle);
  return id;
}

void HandleTable::remove(uint64_t id) {
  std::lock_guard<std::mutex> lock(mutex_);
  handles_.erase(id);
}

std::shared_ptr<OpenHandle> HandleTable::find(uint64_t id) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = handles_.find(id);
  return it == handles_.end() ? nullptr : it->second.lock();
}

}  // namespace pyworker
