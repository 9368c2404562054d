#include "config-phase-link.h"

namespace pyworker {

ConfigPhaseLink::ConfigPhaseLink(kj::AutoCloseFd socket)
    : io_(kj::setupAsyncIo()), connection_(*io_.lowLevelProvider, kj::mv(socket)) {}

void ConfigPhaseLink::run(Call call) {
  call(connection_.worker()).wait(io_.waitScope);
}

}  // namespace pyworker
