#pragma once
// What the plugin asks of the worker before the script's first line (sandbox=, worker-user=):
// given on the command line, applied by main() once the interpreter is up and before any
// thread exists (Landlock restricts only the calling thread and the threads it starts later).

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pyworker {

struct SandboxRequest {
  std::optional<uid_t> uid;  // --user=UID
  std::optional<gid_t> gid;  // --group=GID
  bool enabled = false;      // sandbox=on or best-effort: at least no_new_privs
  bool seccomp = false;      // --sandbox-seccomp
  int landlockAbi = 0;       // --sandbox-landlock=ABI: use what this ABI has; 0 = no Landlock
  bool network = true;       // --sandbox-no-network: no sockets of its own
  std::vector<std::string> readPaths;   // --sandbox-read=PATH (the script's directory, :ro)
  std::vector<std::string> writePaths;  // --sandbox-write=PATH
  bool pdb = false;  // --sandbox-pdb: pdb=on, whose rendezvous (pdb-rendezvous.h) is writable
  bool any() const { return enabled || seccomp || landlockAbi > 0; }
};

bool parseSandboxArgument(std::string_view argument, SandboxRequest& request, bool& valid);
// Whether `argument` is one of the options above (then stored; `valid` false if its value is
// not).

void becomeWorkerUser(const SandboxRequest& request);
// --user/--group: setgroups to the one group, setgid, setuid (the worker is still single
// threaded). Exits with a message on failure.

void applySandbox(const SandboxRequest& request);
// The Landlock domain (the paths asked for, Python's installation and import path, the
// system files every Python program reads) and the seccomp filter. Needs the interpreter
// initialised (it reads sys.path) and no other thread. Exits with a message on failure:
// nothing is ever silently left unprotected.

}  // namespace pyworker
