// The script's per-connection callbacks (open, get_size, block_size, export_description, the
// can_* questions, pread, pwrite, flush, trim, zero, cache, extents, close), called on the
// thread that asks (a lane's): each takes the GIL itself, through Script::call, and turns the
// result into an Outcome (and values) as nbdkit's python plugin does.
#pragma once

#include "open-handle.h"
#include "script.h"
#include "value-conversions.h"

#include "pyworker.capnp.h"

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace pyworker {

class HostLink;

class HandleCallbacks {
public:
  HandleCallbacks(const Script& script, HostLink& host): script(script), host(host) {}

  Outcome open(bool readonly, ConnectionContext connection,
               std::shared_ptr<OpenHandle>& opened) const;
  // The script's open(readonly); `opened` is set when it succeeded.
  Outcome getSize(const OpenHandle& h, int64_t& size) const;
  Outcome blockSize(const OpenHandle& h, BlockSize& sizes) const;
  // All zero when the script has no block_size.
  Outcome exportDescription(const OpenHandle& h, std::optional<std::string>& description) const;
  Outcome query(const OpenHandle& h, rpc::Query which, int32_t& value) const;
  // A can_* (or is_rotational) answer: the script's, or nbdkit python's default when the
  // script lacks that callback.
  std::optional<int32_t> answerWithoutScript(rpc::Query which) const;
  // query()'s answer when it runs no script code (the script lacks the callback and the
  // default does not depend on another answer of the script's), else none. GIL held.

  Outcome pread(const OpenHandle& h, uint8_t* buffer, uint32_t count, uint64_t offset,
                uint32_t flags) const;
  // Fills buffer[0, count) or fails.
  Outcome pwrite(const OpenHandle& h, const uint8_t* bytes, uint32_t count, uint64_t offset,
                 uint32_t flags) const;
  Outcome flush(const OpenHandle& h, uint32_t flags) const;
  Outcome close(const OpenHandle& h) const;
  // The script's close(h), once: the handle object goes away after it, as in-process.
  void closeLeftOver(HandleTable& handles, std::chrono::milliseconds callWait) const;
  // close(h) for every handle the plugin has not closed (it is gone, or could not), as
  // nbdkit closes every connection before cleanup and unload; failures go to the log. A
  // handle whose call has not returned within `callWait` is left alone (hung: the worker
  // does not wait for it either).
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
