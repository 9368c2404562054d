#include "script.h"

#include "host-link.h"
#include "pdb-session.h"
#include "value-conversions.h"

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace pyworker {

void Outcome::fill(rpc::Status::Builder status) const {
  status.setErrno(error);
  status.setMessage(message);
  status.setDisconnect(disconnect);
  if (!errors.empty()) {
    auto list = status.initErrors(errors.size());
    for (size_t i = 0; i < errors.size(); ++i) list.set(i, errors[i]);
  }
}

PyRef checked(PyObject* result) {
  if (!result) throw PythonError{};
  return PyRef(result);
}

std::string Script::formatException() const {
  PyObject *rawType, *rawValue, *rawTrace;
  PyErr_Fetch(&rawType, &rawValue, &rawTrace);
  PyErr_NormalizeException(&rawType, &rawValue, &rawTrace);
  PyRef type(rawType), value(rawValue), trace(rawTrace);
  if (!type) return "<unknown>";

  // nbdkit 1.32 calls traceback.format_exception(type, value, tb) with a NULL-terminated
  // argument list: with no traceback that call fails and it falls back to str(value).
  if (trace) {
    PyRef module(PyImport_ImportModule("traceback"));
    PyRef format(module ? PyObject_GetAttrString(module.get(), "format_exception") : nullptr);
    PyRef lines(format ? PyObject_CallFunctionObjArgs(format.get(), type.get(), value.get(),
                                                      trace.get(), nullptr)
                       : nullptr);
    PyRef separator(PyUnicode_FromString(" "));
    PyRef joined(lines && separator ? PyUnicode_Join(separator.get(), lines.get()) : nullptr);
    if (joined) return lossyUtf8(joined.get());
    PyErr_Clear();
  }
  // Out of memory, the traceback may not be formattable, and str(MemoryError()) is empty:
  // then the exception's name says what happened.
  std::string text = value ? lossyUtf8(value.get()) : "";
  return text.empty() ? PyExceptionClass_Name(type.get()) : text;
}

Outcome Script::failure(const char* callback, std::string detail, int error) const {
  Outcome outcome;
  outcome.error = error;
  outcome.message = scriptPath + ": " + callback + ": error: " + detail;
  return outcome;
}

namespace {

bool isStartUp(const char* callback) {
  for (const char* name : {"load", "config", "config_complete", "thread_model", "get_ready"}) {
    if (strcmp(callback, name) == 0) return true;
  }
  return false;
}

struct PdbSessionEnd {
  // pdb=on: a session still open when the script's code returns ends (pdb-session.h) before
  // anything else runs Python on this thread (formatting a traceback, say); at start-up it
  // goes on into the next callback, up to get_ready. Without one: a thread-local test.
  const char* callback;
  const HostLink& host;
  ~PdbSessionEnd() {
    if (pdbSessionOpen()) endPdbSession(callback, host.onLoopThread() && isStartUp(callback));
  }
};

}  // namespace

Outcome Script::load(const std::string& path, LoadFailure& failure, bool firstLineInPdb) {
  scriptPath = path;
  GilScope gil;
  CallScope scope(nullptr);
  Outcome outcome;

  FILE* file = fopen(path.c_str(), "r");
  if (!file) {
    int error = errno;
    outcome.error = error;
    outcome.message = path + ": cannot open file: " + strerror(error);
    return outcome;
  }

  // Run it as PyRun_SimpleFileEx() does in-process: __main__ with __file__ and __cached__
  // during the run (removed afterwards) and a SourceFileLoader as __loader__.
  PyObject* main = PyImport_AddModule("__main__");  // borrowed
  PyObject* globals = PyModule_GetDict(main);       // borrowed
  PyRef fileName(PyUnicode_DecodeFSDefault(path.c_str()));
  PyDict_SetItemString(globals, "__file__", fileName.get());
  PyDict_SetItemString(globals, "__cached__", Py_None);
  {
    // The class importlib.machinery names, from where CPython's own set_main_loader() takes
    // it: loaded with the interpreter (importing importlib.machinery cost ~0.4 ms of start-up).
    PyRef machinery(PyImport_ImportModule("_frozen_importlib_external"));
    PyRef loader(machinery ? PyObject_CallMethod(machinery.get(), "SourceFileLoader", "sO",
                                                 "__main__", fileName.get())
                           : nullptr);
    if (loader) PyDict_SetItemString(globals, "__loader__", loader.get());
    PyErr_Clear();
  }

  PyRef result;
  {
    PdbSessionEnd sessionEnd{"load", host};
    if (firstLineInPdb) stopAtFirstLine(path);
    result = PyRef(PyRun_FileExFlags(file, path.c_str(), Py_file_input, globals, globals,
                                     /* closeit */ 1, nullptr));
  }
  if (!result) {
    outcome.error = EIO;
    outcome.message = path + ": error running this script";
    PyObject *rawType, *rawValue, *rawTrace;
    PyErr_Fetch(&rawType, &rawValue, &rawTrace);
    PyErr_NormalizeException(&rawType, &rawValue, &rawTrace);
    PyRef type(rawType), value(rawValue), trace(rawTrace);
    if (type && PyErr_GivenExceptionMatches(type.get(), PyExc_SystemExit)) {
      // In-process, PyRun_SimpleFileEx()'s PyErr_Print() ends the process as Python's own
      // handle_system_exit() does: None is 0, an int is itself, anything else is printed
      // and is 1. Nothing else is shown.
      PyRef code(value ? PyObject_GetAttrString(value.get(), "code") : nullptr);
      PyErr_Clear();
      if (!code || code.get() == Py_None) {
        failure.exitStatus = 0;
      } else if (PyLong_Check(code.get())) {
        long status = PyLong_AsLong(code.get());
        PyErr_Clear();
        failure.exitStatus = static_cast<int>(status & 0xff);
      } else {
        failure.printed = lossyUtf8(code.get()) + "\n";
        failure.exitStatus = 1;
      }
    } else {
      // In-process the traceback is printed as Python prints it, then nbdkit's line.
      PyRef module(PyImport_ImportModule("traceback"));
      PyRef lines(module ? PyObject_CallMethod(module.get(), "format_exception", "OOO",
                                               type.get(), value ? value.get() : Py_None,
                                               trace ? trace.get() : Py_None)
                         : nullptr);
      PyRef empty(PyUnicode_FromString(""));
      PyRef joined(lines && empty ? PyUnicode_Join(empty.get(), lines.get()) : nullptr);
      if (joined) {
        failure.printed = lossyUtf8(joined.get());
      } else if (value) {
        PyErr_Clear();
        failure.printed = lossyUtf8(value.get()) + "\n";
      }
    }
  }
  if (PyDict_DelItemString(globals, "__file__") < 0) PyErr_Clear();
  if (PyDict_DelItemString(globals, "__cached__") < 0) PyErr_Clear();
  if (!outcome.ok()) return outcome;

  PyRef apiVersion(PyObject_GetAttrString(main, "API_VERSION"));
  if (!apiVersion) {
    PyErr_Clear();
    version = 1;
  } else {
    // PyLong_AsLong(), as nbdkit python: __index__ objects count, anything else (or an int
    // too large) is -1 and so an unknown version.
    long value = PyLong_AsLong(apiVersion.get());
    if (value == -1 && PyErr_Occurred()) PyErr_Clear();
    {
      GilRelease unlocked;
      host.debug("module requested API_VERSION " + std::to_string(value));
    }
    if (value < 1 || value > 2) {
      outcome.error = EINVAL;
      outcome.message = path + ": API_VERSION requested unknown version: " +
          std::to_string(value) + ".  This plugin supports API versions between 1 and 2.";
      return outcome;
    }
    version = static_cast<int>(value);
  }

  if (!defined("open") || !defined("get_size") || !defined("pread")) {
    outcome.error = EINVAL;
    outcome.message = path + ": one of the required callbacks 'open', 'get_size' or 'pread' "
        "is not defined by this Python script.  nbdkit requires these callbacks.";
  }
  return outcome;
}

PyRef Script::lookup(const char* name) const {
  PyObject* main = PyImport_AddModule("__main__");  // borrowed
  if (!main) {
    PyErr_Clear();
    return PyRef();
  }
  PyRef callback(PyObject_GetAttrString(main, name));
  if (!callback || !PyCallable_Check(callback.get())) {
    PyErr_Clear();
    return PyRef();
  }
  return callback;
}

Outcome Script::call(const char* callback, const ConnectionContext* connection,
                     kj::FunctionParam<void()> body) const {
  GilScope gil;
  CallScope scope(connection);
  scope.state().callback = callback;
  Outcome outcome;
  int fallback = 0;
  try {
    PdbSessionEnd sessionEnd{callback, host};
    body();
    if (PyErr_Occurred()) throw PythonError{};  // a body must not leave one behind
  } catch (PythonError& error) {
    outcome.message = scriptPath + ": " + (error.as ? error.as : callback) + ": error: " +
                      formatException();
  } catch (ScriptError& error) {
    fallback = error.error;
    outcome.message = error.bare    ? error.message
                      : error.plain ? scriptPath + ": " + error.message
                                    : scriptPath + ": " + callback + ": error: " + error.message;
  }
  if (!outcome.message.empty()) {
    outcome.error = scope.state().error != 0 ? scope.state().error
                    : fallback != 0          ? fallback
                                             : EIO;
  }
  outcome.requestedError = scope.state().error;
  outcome.disconnect = scope.state().disconnect;
  outcome.errors = std::move(scope.state().errors);
  return outcome;
}

}  // namespace pyworker
