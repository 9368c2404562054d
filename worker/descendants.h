// Every process a script starts ends with its worker (README "Processes the script starts").
// The worker is a child subreaper: a process the script starts that loses its parent (a
// double-forked daemon after setsid(), a grandchild whose parent exited) is reparented to the
// worker rather than to init, so that everything the script started stays below the worker in
// the process tree for as long as the worker lives. The plugin relies on that when it kills a
// worker (plugin/process-tree.h); the worker ends them itself when it exits.
#pragma once

namespace pyworker {

bool becomeSubreaper();
// At start-up, before any thread: PR_SET_CHILD_SUBREAPER. False if the kernel refused.

void endDescendants();
// SIGKILL every process below this one and reap them, round after round (the children of a
// process ended in one round are this process's children in the next), until none is left or
// about 2 s have passed. For the worker's last moments: it reaps any child, so a caller that
// still waits for a child of its own (Python's subprocess) finds it gone.

}  // namespace pyworker
