#pragma once
// The worker's name in ps, top and gdb: "nbdkit-pyworker-worker SCRIPT (nbdkit PID)".

#include <sys/types.h>

#include <string>

namespace pyworker {

void claimProcessTitle(int argc, char** argv);
// Once, from main(): remembers the argv area to write the title into.
// WARNING: argv[] must not be read after this; parseArguments() copied what it needs.

void setWorkerTitle(const std::string& script, pid_t nbdkit);
// The title, and "pyw:SCRIPT" as the thread name (/proc/PID/comm). Threads started later (the
// Python pool) inherit the name.

}  // namespace pyworker
