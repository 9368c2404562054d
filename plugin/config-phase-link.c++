#include "config-phase-link.h"

#include "output-pump.h"

namespace pyworker {

ConfigPhaseLink::ConfigPhaseLink(kj::AsyncIoContext& io, kj::AutoCloseFd socket, int outputFd,
                                 std::string identity)
    : io_(io),
      connection_(*io_.lowLevelProvider, kj::mv(socket), identity),
      outputPump_(pumpOutput(*io_.lowLevelProvider, outputFd, identity + ": ")
                      .eagerlyEvaluate(nullptr)) {}

void ConfigPhaseLink::run(Call call) {
  call(connection_.worker()).wait(io_.waitScope);
  io_.waitScope.poll();  // Output the worker wrote just before its reply.
}

}  // namespace pyworker
