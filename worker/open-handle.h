// One open connection as the worker keeps it (the script's handle object and what nbdkit's
// connection thread told us), and the table that owns every open one: any lane finds a handle
// there by its id.
#pragma once

#include "call-context.h"
#include "python-ref.h"

#include <cstdint>
#include <memory>
#include <mutex>
#include <map>
#include <vector>

namespace pyworker {

struct OpenHandle {
  mutable PyRef handle;
  // WARNING: read and cleared only with the GIL held. close() clears it, under the GIL, so
  // that whichever thread drops the last reference to this struct needs no GIL (and a second
  // close finds nothing to close).
  ConnectionContext connection;
  mutable int canZero = -1;
  // The script's can_zero answer, once asked (GIL held): nbdkit python keeps it per handle
  // and its can_fast_zero default ("not can_zero") reuses it without calling can_zero again.
};

class HandleTable {
  // Ids are never reused, so a stale id finds nothing rather than another connection.
public:
  uint64_t add(std::shared_ptr<OpenHandle> handle);
  // The table owns it from now on, until take().

  std::shared_ptr<OpenHandle> find(uint64_t id) const;
  // Null when there is no such open handle. A call holds what it found until it returns.

  std::shared_ptr<OpenHandle> take(uint64_t id);
  // Forgets the handle (its close call): find() no longer sees it. Null if there is none.

  std::vector<std::shared_ptr<OpenHandle>> takeAll();
  // Every handle still open, oldest first, forgotten: the plugin is gone without closing them.

private:
  mutable std::mutex mutex_;
  uint64_t nextId_ = 1;
  std::map<uint64_t, std::shared_ptr<OpenHandle>> handles_;  // by id: takeAll() in open order
};

}  // namespace pyworker
