#include "pdb-session.h"

#include "call-context.h"
#include "host-link.h"
#include "pdb-rendezvous.h"
#include "python-ref.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <stdexcept>

namespace pyworker {

namespace {

std::atomic<HostLink*> pdbHost{nullptr};
PyObject* glue = nullptr;  // the _pyworker_pdb module (a strong reference, kept for ever)

enum class Announced { NONE, IN_LOG, TO_PLUGIN };
thread_local Announced announced = Announced::NONE;
// How this thread's waiting breakpoint was made known: on the thread that runs load and
// config (the worker's event loop, which cannot send anything while the script holds it) by a
// line in the log; elsewhere by a Host call, which pauses timeout= until its session ends.
thread_local bool sessionOpen = false;

// --- what the Python side asks of the worker (module _pyworker_pdb_host) ---

PyObject* rendezvous(PyObject*, PyObject*) {
  try {
    std::string directory = pdbRendezvous();
    return PyUnicode_DecodeFSDefault(directory.c_str());
  } catch (const std::runtime_error& e) {
    PyErr_SetString(PyExc_OSError, e.what());
    return nullptr;
  }
}

PyObject* callback(PyObject*, PyObject*) {
  CallState* call = currentCall();
  if (call == nullptr || call->callback == nullptr) Py_RETURN_NONE;
  return PyUnicode_FromString(call->callback);
}

PyObject* waits(PyObject*, PyObject* args) {
  const char* where;
  const char* file;
  unsigned line;
  if (!PyArg_ParseTuple(args, "ssI", &where, &file, &line)) return nullptr;
  HostLink* host = pdbHost.load();
  if (host == nullptr || host->onLoopThread()) {
    // nbdkit's pid: the worker's parent while it is being configured.
    fprintf(stderr,
            "worker process %d waits at a breakpoint %s (%s:%u): tools/pyworker-debug pdb %d\n",
            static_cast<int>(getpid()), where, file, line, static_cast<int>(getppid()));
    fflush(stderr);
    announced = Announced::IN_LOG;
  } else {
    std::string w(where), f(file);
    GilRelease unlocked;
    host->breakpointWaits(w, f, line);
    announced = Announced::TO_PLUGIN;
  }
  Py_RETURN_NONE;
}

PyObject* resumed(PyObject*, PyObject*) {
  HostLink* host = pdbHost.load();
  if (announced == Announced::TO_PLUGIN && host != nullptr) {
    GilRelease unlocked;
    host->breakpointResumed();
  }
  announced = Announced::NONE;
  Py_RETURN_NONE;
}

PyObject* session(PyObject*, PyObject* args) {
  int open;
  if (!PyArg_ParseTuple(args, "p", &open)) return nullptr;
  sessionOpen = open != 0;
  Py_RETURN_NONE;
}

PyObject* onLoopThread(PyObject*, PyObject*) {
  HostLink* host = pdbHost.load();
  return PyBool_FromLong(host == nullptr || host->onLoopThread());
}

PyMethodDef hostMethods[] = {
    {"rendezvous", rendezvous, METH_NOARGS, "The private directory of waiting breakpoints"},
    {"callback", callback, METH_NOARGS, "The script callback this thread runs, or None"},
    {"waits", waits, METH_VARARGS, "Tell nbdkit that a breakpoint waits for pdb"},
    {"resumed", resumed, METH_NOARGS, "Tell nbdkit that this thread's session has ended"},
    {"session", session, METH_VARARGS, "Whether this thread has a pdb session open"},
    {"on_loop_thread", onLoopThread, METH_NOARGS, "Whether this thread runs load and config"},
    {nullptr, nullptr, 0, nullptr},
};

PyModuleDef hostModule = {
    PyModuleDef_HEAD_INIT, "_pyworker_pdb_host", nullptr, -1, hostMethods,
    nullptr, nullptr, nullptr, nullptr,
};

// The Python side. Runs as module _pyworker_pdb, which pdb is told to skip when stepping.
// WARNING: after Pdb.set_trace() every Python call this thread makes is traced: set_trace
// must be the last thing a stop does, and code that runs once a session is over must first
// turn tracing off.
constexpr const char GLUE[] = R"PY(
import os, socket, struct, sys, threading, time

_lock = threading.Lock()
_numbers = iter(range(1, 1 << 62))
_local = threading.local()
_Session = None


def breakpointhook(*args, **kwargs):
    if os.environ.get("PYTHONBREAKPOINT") == "0":  # as sys.__breakpointhook__
        return None
    _stop(sys._getframe(1))


def set_trace(*, header=None):
    _stop(sys._getframe(1), header)


def _describe(callback):
    if callback is not None:
        return "in " + callback
    return "while the script loads" if _host.on_loop_thread() else "in a thread of the script"


class _Link:
    """The session's stdin and stdout: the connection to tools/pyworker-debug. Never raises:
    a connection that breaks reads as end of file, which lets the request go on."""

    def __init__(self, connection):
        self.connection = connection
        self.pending = b""
        self.closed = False

    def write(self, text):
        if not self.closed:
            try:
                self.connection.sendall(text.encode("utf-8", "replace"))
            except OSError:
                self.close()
        return len(text)

    def flush(self):
        pass

    def readline(self):
        while b"\n" not in self.pending and not self.closed:
            try:
                data = self.connection.recv(4096)
            except OSError:
                data = b""
            if not data:
                self.close()
            self.pending += data
        line, newline, self.pending = self.pending.partition(b"\n")
        return (line + newline).decode("utf-8", "replace")

    def close(self):
        if not self.closed:
            self.closed = True
            try:
                self.connection.close()
            except OSError:
                pass


def _session_class():
    global _Session
    if _Session is not None:
        return _Session
    import pdb

    class Session(pdb.Pdb):
        def __init__(self, link):
            super().__init__(stdin=link, stdout=link, skip=[__name__], nosigint=True,
                             readrc=False)
            self.link = link

        def do_continue(self, arg):
            result = super().do_continue(arg)
            if not self.breaks:
                _end(self)
            return result
        do_c = do_cont = do_continue

        def do_EOF(self, arg):
            # The tool went away (end of its input, Ctrl-D, killed): as 'c', for good.
            self.clear_all_breaks()
            return self.do_continue(arg)

        def do_quit(self, arg):
            result = super().do_quit(arg)  # BdbQuit in the script: the request fails (EIO)
            _end(self)
            return result
        do_q = do_exit = do_quit

        def do_run(self, arg):
            self.error("not in pyworker: 'q' fails this request, 'c' lets it go on")
        do_restart = do_run

        def do_interact(self, arg):
            import code
            link = self.link

            def read(prompt=""):
                link.write(prompt)
                line = link.readline()
                if not line:
                    raise EOFError
                return line.rstrip("\n")
            console = code.InteractiveConsole({**self.curframe.f_globals,
                                               **self.curframe_locals})
            console.raw_input = read
            console.write = link.write
            saved = sys.stdout
            sys.stdout = link
            try:
                console.interact("*interactive*", "")
            finally:
                sys.stdout = saved

    _Session = Session
    return Session


def _wait(where, filename, line):
    """Waits for tools/pyworker-debug pdb (root or this worker's user); its connection."""
    directory = _host.rendezvous()
    with _lock:
        base = os.path.join(directory, str(next(_numbers)))
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(base + ".sock")
        with open(base + ".where.new", "w") as f:
            f.write("%s\t%s\t%d\t%d\t%f\n" % (where, filename, line,
                                              threading.get_native_id(), time.time()))
        os.rename(base + ".where.new", base + ".where")
        listener.listen(4)
        _host.waits(where, filename, line)
        while True:
            connection, _ = listener.accept()  # without the GIL
            credentials = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                struct.calcsize("3i"))
            pid, uid, gid = struct.unpack("3i", credentials)
            if uid == 0 or uid == os.geteuid():
                return connection
            try:
                connection.sendall(b"pyworker: refused: only root or the worker's user "
                                   b"may attach\n")
            except OSError:
                pass
            connection.close()
    finally:
        listener.close()
        for name in (base + ".sock", base + ".where"):
            try:
                os.unlink(name)
            except OSError:
                pass


def _open(where, filename, line):
    try:
        connection = _wait(where, filename, line)
    except BaseException:
        _host.resumed()
        raise
    link = _Link(connection)
    session = _session_class()(link)
    _local.session = session
    _host.session(True)
    link.write("pyworker: worker process %d, thread %d, stopped %s (%s:%d). 'c' lets it go on, "
               "'q' fails it (EIO), end of input is 'c'.\n"
               % (os.getpid(), threading.get_native_id(), where, filename, line))
    return session


def _stop(frame, header=None):
    session = getattr(_local, "session", None)
    if session is None:
        where = _describe(_host.callback())
        session = _open(where, frame.f_code.co_filename, frame.f_lineno)
    if header is not None:
        session.message(header)
    session.set_trace(frame)  # the last thing: from here on this thread is traced


def stop_at_first_line(path):
    session = _open("before the script's first line", path, 1)
    session.mainpyfile = session.canonic(path)
    session._wait_for_mainpyfile = True
    session.reset()
    sys.settrace(session.trace_dispatch)  # the last thing, as in _stop


def _end(session):
    if getattr(_local, "session", None) is session:
        _local.session = None
        _host.session(False)
    session.link.close()
    _host.resumed()


def callback_returned(callback, goes_on):
    sys.settrace(None)  # first: nothing below may be stepped into
    session = getattr(_local, "session", None)
    if session is None:
        return
    if goes_on and not session.quitting:
        sys.settrace(session.trace_dispatch)  # into the next start-up callback
        return
    session.message("pyworker: %s has returned: the session ends" % callback)
    _end(session)
)PY";

}  // namespace

void enablePdb(HostLink& host) {
  pdbHost = &host;
  if (glue != nullptr) return;
  PyRef module(PyModule_New("_pyworker_pdb"));
  PyRef hostFunctions(PyModule_Create(&hostModule));
  if (!module || !hostFunctions) throw std::runtime_error("pdb=on: cannot make its module");
  PyObject* globals = PyModule_GetDict(module.get());  // borrowed
  PyDict_SetItemString(globals, "__builtins__", PyEval_GetBuiltins());
  PyDict_SetItemString(globals, "_host", hostFunctions.get());
  PyRef ran(PyRun_String(GLUE, Py_file_input, globals, globals));
  if (!ran) {
    PyErr_Print();
    throw std::runtime_error("pdb=on: its Python side failed to load");
  }
  // Both ways in: breakpoint() asks sys.breakpointhook, pdb.set_trace() is pdb's own (set on
  // the module object, so `import pdb` anywhere sees it; pdb is imported for it here, ~25 ms
  // once, only with pdb=on).
  PyRef hook(PyObject_GetAttrString(module.get(), "breakpointhook"));
  PyRef setTrace(PyObject_GetAttrString(module.get(), "set_trace"));
  PyRef pdb(PyImport_ImportModule("pdb"));
  if (!hook || !setTrace || !pdb || PySys_SetObject("breakpointhook", hook.get()) < 0 ||
      PyObject_SetAttrString(pdb.get(), "set_trace", setTrace.get()) < 0) {
    PyErr_Print();
    throw std::runtime_error("pdb=on: cannot install its breakpoint hook");
  }
  glue = module.release();
}

void stopAtFirstLine(const std::string& path) {
  PyRef name(PyUnicode_DecodeFSDefault(path.c_str()));
  PyRef result(name ? PyObject_CallMethod(glue, "stop_at_first_line", "O", name.get())
                    : nullptr);
  if (!result) PyErr_Print();  // the script then loads without a session, as without pdb
}

bool pdbSessionOpen() { return sessionOpen; }

void endPdbSession(const char* callback, bool goesOn) {
  if (!sessionOpen || glue == nullptr) return;
  // Whatever the callback left pending (BdbQuit after 'q', say) is its outcome: keep it.
  PyObject *type, *value, *trace;
  PyErr_Fetch(&type, &value, &trace);
  PyRef result(PyObject_CallMethod(glue, "callback_returned", "sO", callback,
                                   goesOn ? Py_True : Py_False));
  if (!result) PyErr_Clear();
  PyErr_Restore(type, value, trace);
}

}  // namespace pyworker
