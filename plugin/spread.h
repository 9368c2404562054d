#pragma once
// spread=on: a connection whose script answers can_multi_conn True (the promise that what one
// handle writes another sees once a flush has returned) also opens a handle on every other
// worker, so that its requests can use every worker's interpreter. Each handle's open sees the
// same readonly flag, export name and peer context, and each must answer nbdkit's questions as
// the first did; otherwise the connection stays on one worker and the log says why.

#include <vector>

#include "connection.h"

namespace pyworker {

std::vector<Connection::Binding> spreadConnection(const Connection& connection,
                                                  const Connection::Binding& first);
// A Connection::Spread: the handles on the other workers, opened at once (all but one on a
// thread of its own), or none (logged; with -v only when the script's can_multi_conn is False).

}  // namespace pyworker
