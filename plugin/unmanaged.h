#pragma once
// Storage for a global whose lifetime the plugin ends explicitly (in unload), never at exit().
//
// WARNING: when nbdkit daemonizes, the pre-fork parent calls exit(), which runs C++ static
// destructors. A global owning the worker would kill the daemon's worker from there. So the
// plugin's state lives here: constant-initialized, trivially destructible.

#include <cstddef>
#include <new>
#include <utility>

#include <kj/debug.h>

namespace pyworker {

template <typename T>
class Unmanaged {
public:
  constexpr Unmanaged() = default;

  template <typename... Args>
  T& emplace(Args&&... args) {
    KJ_REQUIRE(object_ == nullptr);
    object_ = new (storage_) T(std::forward<Args>(args)...);
    return *object_;
  }

  void reset() {
    if (object_ != nullptr) {
      object_->~T();
      object_ = nullptr;
    }
  }

  T* get() { return object_; }
  explicit operator bool() const { return object_ != nullptr; }
  T* operator->() { return object_; }

private:
  alignas(T) std::byte storage_[sizeof(T)] = {};
  T* object_ = nullptr;
};

}  // namespace pyworker
