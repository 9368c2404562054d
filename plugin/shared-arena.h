#pragma once
// The data memory a worker shares with the plugin (a memfd mapped by both), handed out in
// ranges, one per request in flight: payloads then do not travel inside Cap'n Proto messages.
// Each range is written by one side and read by the other only while its request is in
// flight; a worker that scribbles elsewhere in the region can spoil only requests it serves
// itself, whose data it decides anyway.

#include <kj/common.h>

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <vector>

namespace pyworker {

class SharedArena {
public:
  SharedArena(kj::byte* base, size_t size, size_t unit);
  // Manages [base, base + size) in units of `unit` bytes (size a multiple of unit).

  class Lease {
    // One request's range; given back when destroyed.
  public:
    Lease() = default;
    Lease(Lease&& other) noexcept;
    Lease& operator=(Lease&& other) noexcept;
    ~Lease();

    explicit operator bool() const { return arena_ != nullptr; }
    uint64_t offset() const { return offset_; }
    kj::byte* data() const;

  private:
    friend class SharedArena;
    SharedArena* arena_ = nullptr;
    uint64_t offset_ = 0;
    size_t units_ = 0;
  };

  Lease lease(size_t bytes);
  // A free range of at least `bytes`, or an empty Lease when none is free (the caller then
  // sends the payload inside the message instead).

  size_t size() const { return size_; }

private:
  void giveBack(uint64_t offset, size_t units);

  kj::byte* base_;
  size_t size_;
  size_t unit_;
  std::mutex mutex_;
  std::vector<bool> used_;  // one per unit
};

}  // namespace pyworker
