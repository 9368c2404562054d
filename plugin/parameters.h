#pragma once
// The key=value parameters nbdkit hands to the plugin: which belong to pyworker itself and which
// are the script's (forwarded in order, so a new worker can be configured exactly the same way).

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pyworker {

class ParameterError : public std::runtime_error {
  // A bad key=value: the message is shown to the user as nbdkit_error() text.
public:
  using std::runtime_error::runtime_error;
};

std::string directoryOf(const std::string& path);
// Where `path` is: its directory part, "." for a bare name, "/" for one at the root.

void checkWatchableDirectory(const std::string& key, const std::string& path);
// The directory of `path`, which inotify watches for it, exists and can be read (the file
// itself need not exist: creating it counts). Throws ParameterError naming key, value and why.

enum class SandboxMode { OFF, ON, BEST_EFFORT };
// sandbox=: off (the default), on (every layer or nbdkit refuses to start), best-effort (what
// the kernel has, the rest logged).

struct SandboxPath {
  std::string path;  // absolute, symlinks resolved
  bool readOnly = false;
  bool operator==(const SandboxPath&) const = default;
};

SandboxPath parseSandboxAllow(const std::string& value);
// sandbox-allow=PATH, PATH:rw or PATH:ro: PATH made absolute with realpath() (it must exist:
// Landlock's rules name existing files). Throws ParameterError naming the value and why.

struct WorkerIdentity {
  // worker-user= / worker-group=: who the worker runs as (nbdkit keeps its own user).
  std::optional<uid_t> uid;
  std::optional<gid_t> gid;
  std::string user;  // as given, for messages
};

class Parameters {
public:
  using SizeParser = std::function<std::optional<uint64_t>(const std::string&)>;
  // nbdkit_parse_size() in the plugin (its suffixes and its error message); injected so that
  // this class stays testable without nbdkit.

  explicit Parameters(SizeParser parseSize = nullptr) : parseSize_(std::move(parseSize)) {}

  void accept(std::string_view key, std::string_view value);
  // Takes one key=value in command-line order. `script` must come first, as with
  // nbdkit python; pyworker's own keys may stand anywhere. Throws ParameterError.

  void checkComplete() const;
  // Throws ParameterError if nothing says which script to run, or the sandbox keys do not go
  // together (sandbox-allow= or sandbox-net= without sandbox=on), or worker-user= names
  // another user while this process is not root.

  const std::string& script() const { return script_; }
  const std::optional<std::string>& workerPath() const { return workerPath_; }
  const std::vector<std::pair<std::string, std::string>>& scriptConfig() const {
    return scriptConfig_;
  }
  const std::optional<std::chrono::milliseconds>& timeout() const { return timeout_; }
  // timeout=SECONDS: longest a callback may run before its worker is killed. None: no limit.
  const std::optional<uint64_t>& memoryLimit() const { return memoryLimit_; }
  // memory=SIZE: the worker's address-space limit (RLIMIT_AS) in bytes.
  const std::optional<uint64_t>& threadStack() const { return threadStack_; }
  // thread-stack=SIZE: the stack of each thread nbdkit starts once configured (none given:
  // plugin/thread-stacks.h's default).
  bool reloadOnChange() const { return reloadOnChange_; }
  // reload=on-change: a changed script is loaded into new workers for new connections.
  const std::optional<std::string>& reloadTrigger() const { return reloadTrigger_; }
  // reload-trigger=PATH: touching PATH asks for the same reload.
  unsigned workers() const { return workers_; }
  // workers=N: N worker processes, connections spread across them (global state is per
  // worker).
  bool recoverByReopening() const { return recoverByReopening_; }
  // recover=reopen: a connection whose worker died is opened again on the replacement and its
  // requests in flight are sent again (recover=off, the default: it fails from then on).
  bool spread() const { return spread_; }
  // spread=on: a connection whose script answers can_multi_conn True (PARALLEL) holds a handle
  // on every worker and each request goes to the least busy one.
  bool debugWait() const { return debugWait_; }
  // debug-wait=true: every new worker waits for a debugger to attach before it loads the
  // script; nothing times out meanwhile.
  SandboxMode sandbox() const { return sandbox_; }
  const std::vector<SandboxPath>& sandboxAllow() const { return sandboxAllow_; }
  // sandbox-allow=PATH[:ro] (repeatable), in the order given.
  bool sandboxNet() const { return sandboxNet_.value_or(true); }
  // sandbox-net=off: no sockets of its own (on, the default with sandbox=on: network clients
  // work).
  const WorkerIdentity& workerIdentity() const { return workerIdentity_; }
  bool pdb() const { return pdb_; }
  // pdb=on: breakpoint() in the script waits for `tools/pyworker-debug pdb` (off: it behaves
  // as in-process, where pdb finds no terminal).
  unsigned maxRestarts() const { return maxRestarts_; }
  std::chrono::seconds restartWindow() const { return restartWindow_; }
  // max-restarts=N within restart-window=SECONDS: past that, no new worker until the window
  // has room again.

  static bool parseBool(const std::string& key, const std::string& value);
  // nbdkit_parse_bool()'s words: 1/0, true/false, yes/no, on/off (any case). Throws.

  static std::chrono::milliseconds parseSeconds(const std::string& key, const std::string& value,
                                                double minimum);
  // Decimal seconds ("30", "0.5"), at least `minimum`. Throws ParameterError.

private:
  SizeParser parseSize_;
  std::optional<std::chrono::milliseconds> timeout_;
  std::optional<uint64_t> memoryLimit_;
  std::optional<uint64_t> threadStack_;
  bool debugWait_ = false;
  bool pdb_ = false;
  bool recoverByReopening_ = false;
  bool spread_ = false;
  unsigned workers_ = 1;
  bool reloadOnChange_ = false;
  std::optional<std::string> reloadTrigger_;
  unsigned maxRestarts_ = 5;
  std::chrono::seconds restartWindow_{60};
  SandboxMode sandbox_ = SandboxMode::OFF;
  std::vector<SandboxPath> sandboxAllow_;
  std::optional<bool> sandboxNet_;
  WorkerIdentity workerIdentity_;
  bool explicitGroup_ = false;
  std::string script_;
  std::optional<std::string> workerPath_;
  std::vector<std::pair<std::string, std::string>> scriptConfig_;
};

}  // namespace pyworker
