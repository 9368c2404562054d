#include "config-phase-link.h"

#include "worker-lost.h"

#include "output-pump.h"

namespace pyworker {

ConfigPhaseLink::ConfigPhaseLink(kj::AsyncIoContext& io, kj::AutoCloseFd socket,
                                 WorkerProcess& process)
    : io_(io),
      process_(process),
      connection_(*io_.lowLevelProvider, kj::mv(socket), process.identity(),
                  static_cast<int>(process.pid())),
      outputPump_(pumpOutput(*io_.lowLevelProvider, process.outputFd(),
                             process.identity() + ": ")
                      .eagerlyEvaluate(nullptr)) {}

void ConfigPhaseLink::run(Call call) {
  try {
    call(connection_.worker()).wait(io_.waitScope);
  } catch (const kj::Exception& e) {
    if (e.getType() != kj::Exception::Type::DISCONNECTED) throw;
    io_.waitScope.poll();  // What it printed as it died (a traceback, faulthandler's dump).
    process_.hasExited(200 * kj::MILLISECONDS);  // its socket closes a moment before it ends
    throw WorkerLost{process_.pid(), process_.describeExit()};
  }
  io_.waitScope.poll();  // Output the worker wrote just before its reply.
}

}  // namespace pyworker
