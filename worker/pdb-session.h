// pdb=on: breakpoint() and pdb.set_trace() stop the thread that calls them and wait for
// `tools/pyworker-debug pdb`, which then drives a pdb session over a Unix socket (the worker's
// stdin is /dev/null and its stdout the log: pdb must not touch them). The rest of the worker
// goes on serving. The plugin is told when a breakpoint waits and when its session ends, so
// that timeout= does not count meanwhile.
#pragma once

#include <string>

namespace pyworker {

class HostLink;

void enablePdb(HostLink& host);
// GIL held; before the script runs. Sets sys.breakpointhook and pdb.set_trace (so pdb is
// imported: ~25 ms more start-up per worker, with pdb=on only).

void stopAtFirstLine(const std::string& path);
// GIL held, pdb enabled (debug-wait=true with pdb=on): waits for a session now, which then
// stops at the first line of `path` when it runs.

bool pdbSessionOpen();
// Whether this thread has a session (a thread-local test).

void endPdbSession(const char* callback, bool goesOn);
// GIL held; after each script callback. A session still open when a callback returns
// (stepped off its end, breakpoints left) ends here, and the request goes on; unless `goesOn`
// (load, config ... get_ready, all on one thread): then it goes on into the next one, to step
// through start-up.

}  // namespace pyworker
