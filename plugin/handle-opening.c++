#include "handle-opening.h"

namespace pyworker {

OpenedHandle openHandle(const std::shared_ptr<WorkerInstance>& instance, bool readonly,
                        const ConnectionContext& context) {
  OpenedHandle opened;
  opened.binding.instance = instance;
  // On a lane, as every later call of the connection: no hop through the RPC threads.
  instance->laneCall(
      [&](rpc::LaneCall::Builder call) {
        call.setOpen();
        call.setReadonly(readonly);
        context.fill(call.initContext());
      },
      [&](rpc::LaneReply::Reader reply) {
        opened.outcome = ScriptOutcome::from(reply.getStatus());
        if (opened.outcome.error == 0) opened.binding.handleId = reply.getHandleId();
      });
  if (opened.outcome.error == 0) instance->handleOpened();
  return opened;
}

}  // namespace pyworker
