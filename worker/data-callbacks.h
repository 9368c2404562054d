// The script's data callbacks (pread, pwrite, flush, trim, zero, cache, extents), called on
// the thread that asks (a lane's): each takes the GIL itself, through Script::call, and turns
// the result into an Outcome as nbdkit's python plugin does.
#pragma once

#include "open-handle.h"
#include "script.h"
#include "value-conversions.h"

#include <cstdint>
#include <vector>

namespace pyworker {

class HostLink;

class DataCallbacks {
public:
  DataCallbacks(const Script& script, HostLink& host): script(script), host(host) {}

  Outcome pread(const OpenHandle& h, uint8_t* buffer, uint32_t count, uint64_t offset,
                uint32_t flags) const;
  // Fills buffer[0, count) or fails.
  Outcome pwrite(const OpenHandle& h, const uint8_t* bytes, uint32_t count, uint64_t offset,
                 uint32_t flags) const;
  Outcome flush(const OpenHandle& h, uint32_t flags) const;
  Outcome trim(const OpenHandle& h, uint32_t count, uint64_t offset, uint32_t flags) const;
  Outcome zero(const OpenHandle& h, uint32_t count, uint64_t offset, uint32_t flags) const;
  // EOPNOTSUPP (the script has no zero, or set it) asks nbdkit to write zeroes instead.
  Outcome cache(const OpenHandle& h, uint32_t count, uint64_t offset, uint32_t flags) const;
  Outcome extents(const OpenHandle& h, uint32_t count, uint64_t offset, uint32_t flags,
                  std::vector<ExtentValue>& extents) const;

private:
  const Script& script;
  HostLink& host;
};

}  // namespace pyworker
