#include "reopen.h"

#include <string>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "answer-check.h"
#include "guard.h"
#include "handle-opening.h"
#include "plugin-state.h"

namespace pyworker {

Connection::Binding reopenConnection(const Connection& connection,
                                     const Connection::Binding& lost, const WorkerLost& why,
                                     unsigned requestsInFlight) {
  auto instance = state().supervisor().instanceOfSlot(lost.instance->slot());
  auto where = describeExport(connection.context());
  auto opened = openHandle(instance, connection.readonly(), connection.context());
  auto refuse = [&](const std::string& reason) -> Connection::ReopenRefused {
    nbdkit_error("pyworker: cannot re-open the connection (%s) on worker process %d: %s",
                 where.c_str(), static_cast<int>(instance->pid()), reason.c_str());
    return {};
  };
  if (opened.outcome.error != 0) throw refuse("open failed: " + opened.outcome.message);
  std::string difference;
  try {
    difference = differenceFrom(*instance, opened.binding.handleId, connection.answers());
  } catch (...) {
    instance->closeHandle(opened.binding.handleId);
    throw;
  }
  if (!difference.empty()) {
    instance->closeHandle(opened.binding.handleId);
    throw refuse(difference);
  }
  std::string resent = requestsInFlight == 0
                           ? std::string("its requests went to the connection's other workers")
                           : std::to_string(requestsInFlight) +
                                 (requestsInFlight == 1 ? " request" : " requests") +
                                 " sent again";
  nbdkit_error("pyworker: connection (%s) re-opened on worker process %d after worker process "
               "%d was lost (%s); %s",
               where.c_str(), static_cast<int>(instance->pid()), static_cast<int>(why.pid),
               why.why.c_str(), resent.c_str());
  return opened.binding;
}

}  // namespace pyworker
