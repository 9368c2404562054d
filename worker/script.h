// The loaded script: running it as __main__, looking up its callbacks by name at call time,
// and calling them with nbdkit's error capture and message format.
#pragma once

#include "call-context.h"
#include "python-ref.h"

#include <kj/function.h>

#include <string>
#include <vector>

namespace pyworker {

class HostLink;

struct Outcome {
  // What a callback's Status says. Built on a pool thread, copied into capnp on the loop.
  int error = 0;
  std::string message;
  rpc::Disconnect disconnect = rpc::Disconnect::NONE;
  int requestedError = 0;  // what set_error() gave, even on success (zero's EOPNOTSUPP rule)
  std::vector<std::string> errors;  // CallState::errors

  bool ok() const { return error == 0; }
  void fill(rpc::Status::Builder status) const;
};

struct PythonError {
  const char* as = nullptr;
  // The name nbdkit python's message gives instead of the callback's (its "PyLong" for a
  // failed conversion), or null.
};
// Thrown inside a callback body when a Python exception is pending: the caller formats it.

struct ScriptError {
  // Thrown inside a callback body for a script mistake Python did not notice (wrong return
  // type, out of range). `message` completes "<script>: <callback>: error: ", or only
  // "<script>: " when `plain` (the few messages nbdkit words that way).
  std::string message;
  bool plain = false;
  bool bare = false;  // `message` is the whole nbdkit_error() text, as nbdkit python words it
  int error = 0;      // the errno when the script set none (0: EIO)
};

PyRef checked(PyObject* result);
// Owns a new reference; throws PythonError when it is null.

class Script {
public:
  explicit Script(HostLink& host): host(host) {}

  struct LoadFailure {
    std::string printed;  // what PyErr_Print() would have shown before nbdkit's message
    int exitStatus = -1;  // sys.exit() at load: the status nbdkit python exits with
  };
  Outcome load(const std::string& path, LoadFailure& failure, bool firstLineInPdb = false);
  // Runs the file as __main__ and checks API_VERSION and the required callbacks. Takes the GIL.
  // `firstLineInPdb` (debug-wait=true with pdb=on): waits for pdb first and stops there at
  // the script's first line.

  const std::string& path() const { return scriptPath; }
  int apiVersion() const { return version; }

  PyRef lookup(const char* name) const;
  // The callable named `name` on __main__, or null (absent or not callable). GIL held.
  bool defined(const char* name) const { return bool(lookup(name)); }

  Outcome call(const char* callback, const ConnectionContext* connection,
               kj::FunctionParam<void()> body) const;
  // Takes the GIL, makes a per-call state for `connection` and runs `body`, turning a Python
  // exception or a ScriptError into nbdkit's "<script>: <callback>: error: ..." outcome with
  // the set_error() errno (else EIO).

  Outcome failure(const char* callback, std::string detail, int error) const;
  // An outcome for a failure outside any Python exception.

  std::string formatException() const;
  // Fetches and clears the pending exception and formats it as nbdkit 1.32 does: the
  // traceback lines joined by a space, or str(exception) when there is no traceback. GIL held.

  HostLink& hostLink() const { return host; }

private:
  HostLink& host;
  std::string scriptPath;
  int version = 1;
};

}  // namespace pyworker
