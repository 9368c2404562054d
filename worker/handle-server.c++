#include "handle-server.h"

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
    Outcome outcome = services.script.call("close", &open->connection, [&]() {
      if (PyRef close = services.script.lookup("close")) {
        checked(PyObject_CallFunctionObjArgs(close.get(), open->handle.get(), nullptr));
      }
    });
    {
      GilScope gil;
      open->handle = PyRef();  // the script's handle object goes away after close(), as in-process
    }
    if (!outcome.ok()) services.host.error(outcome.message);
  }));
}

}  // namespace pyworker
