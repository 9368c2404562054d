// pdb=on: the private directory where a breakpoint waits for `tools/pyworker-debug pdb` (one
// Unix socket per waiting breakpoint, and a line saying where it is). Only the worker's user
// can enter it, so only that user and root can attach; it goes when the worker exits.
#pragma once

#include <string>

namespace pyworker {

std::string pdbRendezvous();
// The directory, made on first use ($TMPDIR or /tmp, pyworker-pdb-PID-XXXXXX, mode 0700),
// and made again if this process has changed user since (-u: its first breakpoints may come
// at load, as root). Throws std::runtime_error saying why it could not be made. Any thread.

void removePdbRendezvous();
// Removes the directory and what is in it, if there is one (no GIL needed: at exit, and
// before after_fork takes nbdkit's -u user, when the old one would be out of that user's
// reach). Any thread.

}  // namespace pyworker
