#include "nbdkit-module.h"

#include "call-context.h"
#include "host-link.h"
#include "parse-delay.h"
#include "parse-probability.h"
#include "parse-size.h"
#include "python-ref.h"
#include "read-password.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <atomic>
#include <cstring>
#include <ctime>

namespace pyworker {

namespace {

std::atomic<HostLink*> moduleHost{nullptr};

template <typename Send>
void toHost(Send&& send) {
  // The host call may wait for the loop thread: let other Python threads run meanwhile.
  if (HostLink* host = moduleHost.load()) {
    GilRelease unlocked;
    send(*host);
  }
}

const ConnectionContext* connection() {
  CallState* call = currentCall();
  return call ? call->connection : nullptr;
}

PyObject* failed(const char* function) {
  PyErr_Format(PyExc_RuntimeError, "nbdkit.%s failed", function);
  return nullptr;
}

PyObject* noConnection(const char* function) {
  // nbdkit's own complaint, then the python plugin's exception.
  // Inside a callback it goes back with the call's outcome, so that the plugin logs it on the
  // connection's thread (with its prefix), as nbdkit does in-process.
  CallState* call = currentCall();
  if (call && call->connection) {
    call->errors.push_back("no connection in this thread");
  } else {
    toHost([](HostLink& host) { host.error("no connection in this thread"); });
  }
  return failed(function);
}

PyObject* debug(PyObject*, PyObject* args) {
  const char* message;
  if (!PyArg_ParseTuple(args, "s:debug", &message)) return nullptr;
  std::string text(message);
  toHost([&](HostLink& host) { host.debug(text); });
  Py_RETURN_NONE;
}

PyObject* exportName(PyObject*, PyObject*) {
  // nbdkit 1.32 has no connection context in preconnect and list_exports: same answer.
  const ConnectionContext* conn = connection();
  if (!conn || !conn->hasExportName) return noConnection("export_name");
  return PyUnicode_DecodeUTF8(conn->exportName.data(), conn->exportName.size(), "strict");
}

PyObject* setError(PyObject*, PyObject* args) {
  int error;
  if (!PyArg_ParseTuple(args, "i:set_error", &error)) return nullptr;
  if (CallState* call = currentCall()) call->error = error;
  Py_RETURN_NONE;
}

PyObject* parseSize(PyObject*, PyObject* args) {
  const char* text;
  if (!PyArg_ParseTuple(args, "s:parse_size", &text)) return nullptr;
  auto result = pyworker::parseSize(text);
  if (auto* error = std::get_if<ParseSizeError>(&result)) {
    toHost([&](HostLink& host) { host.error(error->message); });
    PyErr_SetString(PyExc_ValueError, "Unable to parse string as size");
    return nullptr;
  }
  return PyLong_FromLongLong(std::get<int64_t>(result));
}

// nbdkit ≥ 1.36 / 1.40 call nbdkit_parse_probability() / nbdkit_parse_delay(); the worker parses
// the same way itself (parse-probability.c++, parse-delay.c++), so these exist under every nbdkit.
// As with parse_size: nbdkit_error() names `what` and the string, the exception is nbdkit's.
PyObject* parseProbability(PyObject*, PyObject* args) {
  const char *what, *text;
  if (!PyArg_ParseTuple(args, "ss:parse_probability", &what, &text)) return nullptr;
  auto result = pyworker::parseProbability(what, text);
  if (auto* error = std::get_if<ParseProbabilityError>(&result)) {
    toHost([&](HostLink& host) { host.error(error->message); });
    PyErr_SetString(PyExc_ValueError, "Unable to parse string as probability");
    return nullptr;
  }
  return PyFloat_FromDouble(std::get<double>(result));
}

PyObject* parseDelay(PyObject*, PyObject* args) {
  const char *what, *text;
  if (!PyArg_ParseTuple(args, "ss:parse_delay", &what, &text)) return nullptr;
  auto result = pyworker::parseDelay(what, text);
  if (auto* error = std::get_if<ParseDelayError>(&result)) {
    toHost([&](HostLink& host) { host.error(error->message); });
    PyErr_SetString(PyExc_ValueError, "Unable to parse string as delay");
    return nullptr;
  }
  const Delay& delay = std::get<Delay>(result);
  return Py_BuildValue("(II)", delay.seconds, delay.nanoseconds);
}

PyObject* shutdown(PyObject*, PyObject*) {
  toHost([](HostLink& host) { host.shutdown(); });
  Py_RETURN_NONE;
}

PyObject* disconnect(PyObject*, PyObject* args) {
  int force;
  if (!PyArg_ParseTuple(args, "p:disconnect", &force)) return nullptr;
  // Only nbdkit's connection thread can act on it: the plugin does, from the reply.
  CallState* call = currentCall();
  if (call && call->connection) {
    call->disconnect = force ? rpc::Disconnect::FORCE : rpc::Disconnect::SOFT;
  }
  Py_RETURN_NONE;
}

PyObject* isTls(PyObject*, PyObject*) {
  const ConnectionContext* conn = connection();
  if (!conn) return noConnection("is_tls");
  return PyBool_FromLong(conn->isTls);
}

PyObject* nanosleep(PyObject*, PyObject* args) {
  unsigned int seconds, nanoseconds;
  if (!PyArg_ParseTuple(args, "II:nanosleep", &seconds, &nanoseconds)) return nullptr;
  struct timespec delay = {static_cast<time_t>(seconds), static_cast<long>(nanoseconds)};
  int r;
  {
    GilRelease unlocked;
    while ((r = ::nanosleep(&delay, &delay)) == -1 && errno == EINTR) {}
  }
  if (r == -1) return failed("nanosleep");
  Py_RETURN_NONE;
}

PyObject* peerName(PyObject*, PyObject*) {
  const ConnectionContext* conn = connection();
  if (!conn) return noConnection("peer_name");
  const std::string& raw = conn->peerAddress;
  if (raw.size() < sizeof(sa_family_t)) return failed("peer_name");
  sockaddr_storage address{};
  memcpy(&address, raw.data(), std::min(raw.size(), sizeof address));
  char host[INET6_ADDRSTRLEN];
  // The shapes Python's socket module uses for these families.
  switch (address.ss_family) {
  case AF_INET: {
    auto* in = reinterpret_cast<const sockaddr_in*>(&address);
    if (!inet_ntop(AF_INET, &in->sin_addr, host, sizeof host)) return failed("peer_name");
    return Py_BuildValue("(si)", host, ntohs(in->sin_port));
  }
  case AF_INET6: {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(&address);
    if (!inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host)) return failed("peer_name");
    return Py_BuildValue("(siII)", host, ntohs(in6->sin6_port),
                         static_cast<unsigned>(ntohl(in6->sin6_flowinfo)),
                         static_cast<unsigned>(in6->sin6_scope_id));
  }
  case AF_UNIX: {
    auto* un = reinterpret_cast<const sockaddr_un*>(&address);
    size_t length = std::min(raw.size(), sizeof(sockaddr_un)) - offsetof(sockaddr_un, sun_path);
    if (length > 0 && un->sun_path[0] == '\0') {
      return PyBytes_FromStringAndSize(un->sun_path, length);  // abstract namespace
    }
    return PyUnicode_DecodeFSDefault(std::string(un->sun_path, strnlen(un->sun_path, length))
                                         .c_str());
  }
  default:
    return failed("peer_name");
  }
}

// nbdkit's python plugin (≥ 1.38) raises ValueError("Unable to get client pid") whenever
// nbdkit_peer_pid() fails: no connection in this thread, or a TCP client. Scripts catch that.
template <int64_t ConnectionContext::*field>
PyObject* peerId(const char* which) {
  const ConnectionContext* conn = connection();
  if (!conn) toHost([](HostLink& host) { host.error("no connection in this thread"); });
  if (!conn || conn->*field < 0) {
    PyErr_Format(PyExc_ValueError, "Unable to get client %s", which);
    return nullptr;
  }
  return PyLong_FromLongLong(conn->*field);
}

PyObject* peerPid(PyObject*, PyObject*) { return peerId<&ConnectionContext::peerPid>("pid"); }
PyObject* peerUid(PyObject*, PyObject*) { return peerId<&ConnectionContext::peerUid>("uid"); }
PyObject* peerGid(PyObject*, PyObject*) { return peerId<&ConnectionContext::peerGid>("gid"); }

// What nbdkit 1.32 cannot tell (nbdkit_peer_security_context() came in 1.36,
// nbdkit_peer_tls_dn() and nbdkit_peer_tls_issuer_dn() in 1.40) and the plugin does not capture:
// nbdkit's own exception for "unavailable", which scripts already handle, with the reason.
PyObject* unavailable(const char* function, const char* nbdkitsText, const char* release) {
  PyErr_Format(PyExc_ValueError,
               "%s: nbdkit.%s() needs nbdkit >= %s, and pyworker does not pass it from nbdkit "
               "to the worker yet", nbdkitsText, function, release);
  return nullptr;
}

PyObject* peerSecurityContext(PyObject*, PyObject*) {
  return unavailable("peer_security_context", "Unable to get client security context", "1.36");
}
PyObject* peerTlsDn(PyObject*, PyObject*) {
  return unavailable("peer_tls_dn", "Unable to get client TLS DN", "1.40");
}
PyObject* peerTlsIssuerDn(PyObject*, PyObject*) {
  return unavailable("peer_tls_issuer_dn", "Unable to get issuer TLS DN", "1.40");
}

PyObject* stdioSafe(PyObject*, PyObject*) {
  // The worker's stdin is /dev/null and its stdout goes to nbdkit's stderr: interacting with
  // the user through them never works, whatever nbdkit's answer would be.
  Py_RETURN_FALSE;
}

PyObject* readPassword(PyObject*, PyObject* args) {
  const char* value;
  if (!PyArg_ParseTuple(args, "s:read_password", &value)) return nullptr;
  std::variant<std::string, ReadPasswordError> result;
  {
    GilRelease unlocked;  // +FILE may be a FIFO
    result = pyworker::readPassword(value);
  }
  if (auto* error = std::get_if<ReadPasswordError>(&result)) {
    toHost([&](HostLink& host) { host.error(error->message); });
    PyErr_SetString(PyExc_ValueError, "Unable to parse parameter as a password");
    return nullptr;
  }
  const std::string& password = std::get<std::string>(result);
  return PyBytes_FromStringAndSize(password.data(), password.size());
}

PyMethodDef methods[] = {
    {"debug", debug, METH_VARARGS, "Print a debug message"},
    {"export_name", exportName, METH_NOARGS, "Return the optional export name negotiated with the client"},
    {"set_error", setError, METH_VARARGS, "Store an errno value prior to throwing an exception"},
    {"parse_size", parseSize, METH_VARARGS, "Parse human-readable size strings into bytes"},
    {"parse_probability", parseProbability, METH_VARARGS, "Parse probability strings into floating point number"},
    {"parse_delay", parseDelay, METH_VARARGS, "Parse delay and sleep strings into (sec, nsec) pair"},
    {"shutdown", shutdown, METH_NOARGS, "Request asynchronous shutdown"},
    {"disconnect", disconnect, METH_VARARGS, "Request disconnection from current client"},
    {"is_tls", isTls, METH_NOARGS, "Return True if the client completed TLS authentication"},
    {"nanosleep", nanosleep, METH_VARARGS, "Sleep for seconds and nanoseconds"},
    {"peer_name", peerName, METH_NOARGS, "Return the client's address"},
    {"peer_pid", peerPid, METH_NOARGS, "Return the client's process ID (Unix sockets)"},
    {"peer_uid", peerUid, METH_NOARGS, "Return the client's user ID (Unix sockets)"},
    {"peer_gid", peerGid, METH_NOARGS, "Return the client's group ID (Unix sockets)"},
    {"peer_security_context", peerSecurityContext, METH_NOARGS, "Return the client security context"},
    {"peer_tls_dn", peerTlsDn, METH_NOARGS, "Return the client TLS Distinguished Name"},
    {"peer_tls_issuer_dn", peerTlsIssuerDn, METH_NOARGS, "Return the client certificate issuer's TLS Distinguished Name"},
    {"read_password", readPassword, METH_VARARGS, "Read a password from a config parameter"},
    {"stdio_safe", stdioSafe, METH_NOARGS, "Return True if it is safe to interact with stdin and stdout"},
    {nullptr, nullptr, 0, nullptr},
};

PyModuleDef moduleDef = {
    PyModuleDef_HEAD_INIT,
    "nbdkit",
    "Module used to access nbdkit server API",
    -1,
    methods,
    nullptr, nullptr, nullptr, nullptr,
};

PyObject* initModule() {
  PyRef module(PyModule_Create(&moduleDef));
  if (!module) return nullptr;
  struct Constant {
    const char* name;
    long value;
  };
  static const Constant constants[] = {
      {"THREAD_MODEL_SERIALIZE_CONNECTIONS", 0}, {"THREAD_MODEL_SERIALIZE_ALL_REQUESTS", 1},
      {"THREAD_MODEL_SERIALIZE_REQUESTS", 2},    {"THREAD_MODEL_PARALLEL", 3},
      {"FLAG_MAY_TRIM", 1},  {"FLAG_FUA", 2},  {"FLAG_REQ_ONE", 4},  {"FLAG_FAST_ZERO", 8},
      {"FUA_NONE", 0},       {"FUA_EMULATE", 1},  {"FUA_NATIVE", 2},
      {"CACHE_NONE", 0},     {"CACHE_EMULATE", 1}, {"CACHE_NATIVE", 2},
      {"EXTENT_HOLE", 1},    {"EXTENT_ZERO", 2},
  };
  for (const auto& constant : constants) {
    if (PyModule_AddIntConstant(module.get(), constant.name, constant.value) < 0) {
      return nullptr;
    }
  }
  return module.release();
}

}  // namespace

void registerNbdkitModule() { PyImport_AppendInittab("nbdkit", initModule); }

void setNbdkitModuleHost(HostLink* host) { moduleHost = host; }

}  // namespace pyworker
