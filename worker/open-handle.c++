#include "open-handle.h"

#include <utility>

namespace pyworker {

uint64_t HandleTable::add(std::shared_ptr<OpenHandle> handle) {
  std::lock_guard<std::mutex> lock(mutex_);
  uint64_t id = nextId_++;
  handles_.emplace(id, std::move(handle));
  return id;
}

std::shared_ptr<OpenHandle> HandleTable::find(uint64_t id) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = handles_.find(id);
  return it == handles_.end() ? nullptr : it->second;
}

std::shared_ptr<OpenHandle> HandleTable::take(uint64_t id) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = handles_.find(id);
  if (it == handles_.end()) return nullptr;
  auto handle = std::move(it->second);
  handles_.erase(it);
  return handle;
}

std::vector<std::shared_ptr<OpenHandle>> HandleTable::takeAll() {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<std::shared_ptr<OpenHandle>> every;
  for (auto& [id, handle] : handles_) every.push_back(std::move(handle));
  handles_.clear();
  return every;
}

}  // namespace pyworker
