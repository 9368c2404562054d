#pragma once
// The script's open(): a handle on a worker for one nbdkit connection, from its readonly flag
// and captured context. For a new connection (nbdkit's open) and for a re-open on another
// worker (recover=reopen) alike.

#include <memory>

#include "connection-context.h"
#include "connection.h"
#include "script-outcome.h"
#include "worker-instance.h"

namespace pyworker {

struct OpenedHandle {
  ScriptOutcome outcome;
  Connection::Binding binding;  // a handle id only when the script's open() succeeded
};

OpenedHandle openHandle(const std::shared_ptr<WorkerInstance>& instance, bool readonly,
                        const ConnectionContext& context);
// Throws as WorkerInstance::laneCall().

}  // namespace pyworker
