// Ending a worker together with every process its script started. The worker is a child
// subreaper (worker/descendants.h): while it lives, whatever the script started (children,
// grandchildren, setsid() daemons that double-forked) is below it in the process tree.
#pragma once

#include <sys/types.h>

namespace pyworker {

void killDescendants(pid_t root);
// SIGKILL every live process below `root` (not `root` itself), round after round (a process
// started meanwhile is found in the next one), for up to about 2 s. Each is signalled through a
// pidfd opened while /proc still showed it below `root`, never by a pid that may have been
// reused. Stop `root` first (SIGSTOP), or it may start more.

void killGroupMembers(pid_t group);
// SIGKILL the live processes in process group `group` other than its leader, through pidfds;
// nothing if a live process has the pid `group` (the number was reused: not our group).

}  // namespace pyworker
