#pragma once
// debug-wait=: hold the script's start-up until a debugger is attached to this process, so that
// load, config and config_complete can be stepped through.

namespace pyworker {

void waitForDebugger();
// Returns once /proc/self/status shows a tracer. Polls without holding the GIL; nothing on the
// plugin side times out meanwhile.

}  // namespace pyworker
