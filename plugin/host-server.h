#pragma once
// The plugin's side of what the worker may ask of nbdkit (nbdkit.debug(), nbdkit.shutdown(),
// errors with no request to fail). Runs on whichever thread drives the RPC loop; every nbdkit
// function it calls is safe from any thread.

#include <string>

#include "breakpoint-pause.h"
#include "pyworker.capnp.h"

namespace pyworker {

void replayHostCall(rpc::HostCall::Reader call, const std::string& identity);
// A Host call that came in a lane call's reply, made now, on the calling nbdkit thread.

class HostServer final : public rpc::Host::Server {
public:
  HostServer(std::string identity, int pid, BreakpointPause* pause)
      : identity_(kj::mv(identity)), pid_(pid), pause_(pause) {}
  // `identity` ("pyworker[1234]") starts each nbdkit.debug() line: which worker spoke. `pause`:
  // the serving worker's (pdb=on), or null (the config phase, where the worker logs its
  // breakpoints itself).

protected:
  kj::Promise<void> debug(DebugContext context) override;
  kj::Promise<void> error(ErrorContext context) override;
  kj::Promise<void> shutdown(ShutdownContext context) override;
  kj::Promise<void> breakpointWaits(BreakpointWaitsContext context) override;
  kj::Promise<void> breakpointResumed(BreakpointResumedContext context) override;

private:
  std::string identity_;
  int pid_;
  BreakpointPause* pause_;
};

}  // namespace pyworker
