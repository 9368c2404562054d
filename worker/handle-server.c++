#include "handle-server.h"

#include "handle-callbacks.h"

#include "host-link.h"
#include "python-executor.h"
#include "script.h"

#include <chrono>
#include <thread>

namespace pyworker {

HandleServer::HandleServer(Services services, std::shared_ptr<OpenHandle> open)
    : services(services), open(kj::mv(open)), id(services.handles.add(this->open)) {}

HandleServer::~HandleServer() noexcept(false) {
  services.handles.remove(id);  // no new data call finds it
  Services services = this->services;
  services.closes.add(services.executor.run<void>([services, open = kj::mv(open)]() {
    // A correct plugin closes only after the connection's last data call was answered, and a
    // lane lets go of the handle before it answers; close() must still never overlap a call.
    while (open.use_count() > 1) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    // Normally the plugin has closed it on a lane already (HandleCallbacks::close); this is
    // for a plugin that could not (its RPC thread releases every handle when it stops).
    Outcome outcome = HandleCallbacks(services.script, services.host).close(*open);
    if (!outcome.ok()) services.host.error(outcome.message);
  }));
}

}  // namespace pyworker
