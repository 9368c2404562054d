#include "handle-opening.h"

namespace pyworker {

OpenedHandle openHandle(const std::shared_ptr<WorkerInstance>& instance, bool readonly,
                        const ConnectionContext& context) {
  OpenedHandle opened;
  opened.binding.instance = instance;
  instance->run([&](rpc::Worker::Client& worker) {
    auto request = worker.openRequest();
    request.setReadonly(readonly);
    context.fill(request.initContext());
    return request.send().then([&](auto response) {
      opened.outcome = ScriptOutcome::from(response.getStatus());
      if (opened.outcome.error == 0) {
        opened.binding.handleId = response.getHandleId();
        instance->keepHandle(opened.binding.handleId, response.getHandle());
      }
    });
  });
  return opened;
}

}  // namespace pyworker
