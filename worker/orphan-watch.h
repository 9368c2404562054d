#pragma once
// Ends the worker when the plugin is gone while the script keeps the main thread busy. The
// main thread notices the end of its serving connection in its event loop, but the config
// phase (load, config, config_complete, thread_model, get_ready) runs the script on that very
// thread: a script blocked there (a backend that does not answer, time.sleep at top level)
// would outlive a nbdkit that was killed, reparented to init. PR_SET_PDEATHSIG cannot serve:
// it fires when the spawning thread ends, and nbdkit's pre-fork parent exits on purpose.

#include <chrono>

namespace pyworker {

void startOrphanWatch(int servingFd, std::chrono::milliseconds grace);
// Starts a detached thread that waits for the plugin's end of `servingFd` to close (it only
// polls for the hang-up; it never reads). Then the worker has `grace` to begin its own orderly
// exit (orderlyExitBegun()); if it has not, the thread ends the process with _exit(1).

void orderlyExitBegun();
// Called by the main thread once it has noticed the end of the connection itself: from then on
// its own exit (which runs atexit handlers, with a watchdog of its own) takes its time.

}  // namespace pyworker
