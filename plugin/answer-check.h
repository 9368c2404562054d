#pragma once
// Whether a handle answers what nbdkit was told by the connection's first handle (size, can_*,
// is_rotational, block_size): nbdkit caches those for the connection's life, so a handle that
// serves it later (recover=reopen) or beside the first (spread=on) must give the same ones.

#include <cstdint>
#include <string>

#include "connection.h"
#include "worker-instance.h"

namespace pyworker {

std::string differenceFrom(WorkerInstance& instance, uint64_t handle,
                           const Connection::Answers& told);
// Asks the handle every question nbdkit has asked; returns the first difference
// ("get_size changed from 1024 to 2048", "can_trim failed: ..."), empty when none. Throws as
// WorkerInstance::laneCall().

std::string describeExport(const ConnectionContext& context);
// `export "NAME"`, for log lines about a connection.

}  // namespace pyworker
