#pragma once
// recover=reopen: a connection whose worker was lost is opened again on the worker that now
// serves its slot (the replacement, or after a reload the new generation), with the same
// readonly flag and context, and must give the answers nbdkit already cached (size, can_*,
// is_rotational, block_size); otherwise it is refused and the connection fails as with
// recover=off. Every outcome is logged: a script that keeps its disk in the interpreter comes
// back empty after a re-open, and the operator must be able to see that one happened.

#include "connection.h"

namespace pyworker {

Connection::Binding reopenConnection(const Connection& connection,
                                     const Connection::Binding& lost, const WorkerLost& why,
                                     unsigned requestsInFlight);
// A Connection::Reopen. Throws Connection::ReopenRefused (logged), or ScriptFailed / WorkerLost
// / CallTimedOut when no worker can be had now.

}  // namespace pyworker
