// One open connection as the worker keeps it (the script's handle object and what nbdkit's
// connection thread told us), and the table that lets any lane find it by its id.
#pragma once

#include "call-context.h"
#include "python-ref.h"

#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_map>

namespace pyworker {

struct OpenHandle {
  mutable PyRef handle;
  // WARNING: read and cleared only with the GIL held. close() clears it, under the GIL, so
  // that whichever thread drops the last reference to this struct needs no GIL (and a second
  // close, when the capability is released after a close on a lane, finds nothing to close).
  ConnectionInfo connection;
  mutable int canZero = -1;
  // The script's can_zero answer, once asked (GIL held): nbdkit python keeps it per handle
  // and its can_fast_zero default ("not can_zero") reuses it without calling can_zero again.
};

class HandleTable {
  // Ids are never reused, so a stale id finds nothing rather than another connection.
public:
  uint64_t add(std::shared_ptr<OpenHandle> handle);
  void remove(uint64_t id);
  // After remove(), find() no longer sees the handle; calls already running keep theirs.

  std::shared_ptr<OpenHandle> find(uint64_t id) const;
  // Null when there is no such open handle.

private:
  mutable std::mutex mutex_;
  uint64_t nextId_ = 1;
  std::unordered_map<uint64_t, std::weak_ptr<OpenHandle>> handles_;
};

}  // namespace pyworker
