#pragma once
// How lanes are made (see "Lanes" in pyworker.capnp): over a SOCK_SEQPACKET socket (the
// worker's --lane-fd), one message per lane, the single byte 'L' with the lane's socket
// attached (SCM_RIGHTS). Shared by the plugin (offers), the worker (takes) and the tests.

#include <kj/common.h>
#include <kj/io.h>

namespace pyworker {

kj::AutoCloseFd offerNewLane(int offers);
// Makes a socketpair, hands one end over `offers` and returns the other. Throws
// kj::Exception DISCONNECTED when nobody takes lanes on the other side any more.

kj::Maybe<kj::AutoCloseFd> takeOfferedLane(int offers);
// Waits for the next lane offered on `offers`. Nothing when the offering side is gone;
// messages that are not a lane offer (no socket attached, another byte, a truncated control
// message) are skipped.

}  // namespace pyworker
