// The built-in `nbdkit` Python module, as nbdkit 1.32's python plugin provides it (same names,
// constants, argument checks and exceptions), plus disconnect(), is_tls(), nanosleep() and
// peer_*() answered from the per-call connection state.
#pragma once

namespace pyworker {

class HostLink;

void registerNbdkitModule();
// Before Py_Initialize*(): makes `import nbdkit` find the built-in module.

void setNbdkitModuleHost(HostLink* host);
// Where debug(), shutdown() and nbdkit_error()-style messages go; null drops them.

}  // namespace pyworker
