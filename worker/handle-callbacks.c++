#include "handle-callbacks.h"

#include "host-link.h"

#include <kj/debug.h>
#include <kj/function.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

namespace pyworker {

namespace {

bool releaseView(PyObject* view) {
  // memoryview.release(), keeping any exception the callback raised. It fails when the
  // script still holds an export of the view (a numpy array made from it, say); a slice or
  // memoryview(buf) kept by the script survives it, still sharing the managed buffer.
  PyObject *type, *value, *trace;
  PyErr_Fetch(&type, &value, &trace);
  PyRef result(PyObject_CallMethod(view, "release", nullptr));
  PyErr_Clear();
  PyErr_Restore(type, value, trace);
  auto* managed = reinterpret_cast<PyMemoryViewObject*>(view)->mbuf;
  return result && managed->exports == 0;
}

PyRef callWithView(PyObject* view, const char* callback, kj::FunctionParam<PyObject*()> call) {
  PyRef result(call());
  bool released = releaseView(view);
  if (!result) throw PythonError{};
  if (!released) {
    // WARNING: the memory stays reachable from Python; all we can do is report it.
    throw ScriptError{std::string(callback) +
                      " kept a reference to its buffer after returning; copy the data instead"};
  }
  return result;
}

PyObject* self(const OpenHandle& h) {
  // Borrowed: the call's arguments hold their own reference. Null once close() has run, which
  // a correct plugin never lets a data call see.
  if (!h.handle) throw ScriptError{"the connection is already closed"};
  return h.handle.get();
}

unsigned long long at(uint64_t offset) { return static_cast<unsigned long long>(offset); }

}  // namespace

Outcome HandleCallbacks::getSize(const OpenHandle& h, int64_t& size) const {
  return script.call("get_size", &h.connection, [&]() {
    PyRef fn = script.lookup("get_size");
    if (!fn) throw ScriptError{"the script has no get_size function"};
    PyRef answer = checked(PyObject_CallFunctionObjArgs(fn.get(), self(h), nullptr));
    size = toSize(answer.get(), "get_size");
  });
}

Outcome HandleCallbacks::blockSize(const OpenHandle& h, BlockSize& sizes) const {
  return script.call("block_size", &h.connection, [&]() {
    if (PyRef fn = script.lookup("block_size")) {
      PyRef answer = checked(PyObject_CallFunctionObjArgs(fn.get(), self(h), nullptr));
      sizes = toBlockSize(answer.get(), "block_size");
    }
  });
}

Outcome HandleCallbacks::exportDescription(const OpenHandle& h,
                                           std::optional<std::string>& description) const {
  return script.call("export_description", &h.connection, [&]() {
    if (PyRef fn = script.lookup("export_description")) {
      PyRef text = checked(PyObject_CallFunctionObjArgs(fn.get(), self(h), nullptr));
      description = textAsNbdkit(text.get(), "export_description", "the description");
      if (!description) {
        throw ScriptError{"export_description method did not return a string", false, true};
      }
    }
  });
}

namespace {

struct Question {
  const char* callback;
  enum Kind { BOOLEAN, FUA, CACHE } kind;
  const char* implied;  // the callback whose presence is the default answer, or null
  bool impliedMeans;    // answer when `implied` is defined (negated when it is not)
};

const Question QUESTIONS[] = {
    {"can_write", Question::BOOLEAN, "pwrite", true},
    {"can_flush", Question::BOOLEAN, "flush", true},
    {"is_rotational", Question::BOOLEAN, nullptr, false},
    {"can_trim", Question::BOOLEAN, "trim", true},
    {"can_zero", Question::BOOLEAN, "zero", true},
    {"can_fast_zero", Question::BOOLEAN, nullptr, false},  // default: see query()
    {"can_fua", Question::FUA, "flush", true},
    {"can_cache", Question::CACHE, "cache", true},
    {"can_extents", Question::BOOLEAN, "extents", true},
    {"can_multi_conn", Question::BOOLEAN, nullptr, false},
};

const Question& questionOf(rpc::Query which) {
  auto index = static_cast<size_t>(which);
  KJ_REQUIRE(index < kj::size(QUESTIONS), "unknown query", index);
  return QUESTIONS[index];
}

}  // namespace

std::optional<int32_t> HandleCallbacks::answerWithoutScript(rpc::Query which) const {
  const Question& question = questionOf(which);
  if (script.defined(question.callback)) return std::nullopt;
  if (which == rpc::Query::CAN_FAST_ZERO) {
    // Without can_fast_zero, 1.32 answers "not can_zero": the script's, if it has one.
    if (script.defined("can_zero")) return std::nullopt;
    return !script.defined("zero");
  }
  bool implied = question.implied && script.defined(question.implied);
  bool answer = question.implied ? implied == question.impliedMeans : false;
  switch (question.kind) {
  case Question::BOOLEAN: return answer;
  case Question::FUA: return answer ? 1 : 0;    // FUA_EMULATE : FUA_NONE
  case Question::CACHE: return answer ? 2 : 0;  // CACHE_NATIVE : CACHE_NONE
  }
  return std::nullopt;
}

Outcome HandleCallbacks::query(const OpenHandle& h, rpc::Query which, int32_t& value) const {
  const Question& question = questionOf(which);
  return script.call(question.callback, &h.connection, [&]() {
    if (PyRef fn = script.lookup(question.callback)) {
      PyRef answer = checked(PyObject_CallFunctionObjArgs(fn.get(), self(h), nullptr));
      switch (question.kind) {
      case Question::BOOLEAN:
        value = toBool(answer.get());
        if (which == rpc::Query::CAN_ZERO) h.canZero = value;
        break;
      case Question::FUA:
        value = toChoice(answer.get(), question.callback, 2,
                         "nbdkit.FUA_NONE, FUA_EMULATE or FUA_NATIVE");
        break;
      case Question::CACHE:
        value = toChoice(answer.get(), question.callback, 2,
                         "nbdkit.CACHE_NONE, CACHE_EMULATE or CACHE_NATIVE");
        break;
      }
      return;
    }
    if (auto answer = answerWithoutScript(which)) {
      value = *answer;
      return;
    }
    // can_fast_zero without one, with the script's can_zero: 1.32 answers "not can_zero" (the
    // script's answer, kept from nbdkit's can_zero question): nbdkit then fails fast zero
    // requests itself when it would have to write zeroes slowly.
    if (h.canZero >= 0) {
      value = !h.canZero;
    } else if (PyRef canZero = script.lookup("can_zero")) {
      PyRef answer(PyObject_CallFunctionObjArgs(canZero.get(), self(h), nullptr));
      if (!answer) throw PythonError{"can_zero"};
      h.canZero = toBool(answer.get());
      value = !h.canZero;
    }
  });
}

Outcome HandleCallbacks::pread(const OpenHandle& h, uint8_t* buffer, uint32_t count,
                             uint64_t offset, uint32_t flags) const {
  return script.call("pread", &h.connection, [&]() {
    PyRef fn = script.lookup("pread");
    if (!fn) throw ScriptError{"the script has no pread function"};
    if (script.apiVersion() == 1) {
      PyRef result = checked(PyObject_CallFunction(fn.get(), "OIK", self(h), count,
                                                   at(offset)));
      Py_buffer view;
      if (PyObject_GetBuffer(result.get(), &view, PyBUF_SIMPLE) < 0) {
        PyErr_Clear();
        throw ScriptError{"value returned from pread does not support the buffer protocol",
                          true};
      }
      bool tooSmall = view.len < static_cast<Py_ssize_t>(count);
      if (!tooSmall) memcpy(buffer, view.buf, count);  // longer: truncated, as in-process
      PyBuffer_Release(&view);
      if (tooSmall) throw ScriptError{"buffer returned from pread is too small", true};
    } else {
      PyRef view = checked(PyMemoryView_FromMemory(reinterpret_cast<char*>(buffer), count,
                                                   PyBUF_WRITE));
      callWithView(view.get(), "pread", [&]() {
        return PyObject_CallFunction(fn.get(), "OOKI", self(h), view.get(), at(offset),
                                     flags);
      });
    }
  });
}

Outcome HandleCallbacks::pwrite(const OpenHandle& h, const uint8_t* bytes, uint32_t count,
                              uint64_t offset, uint32_t flags) const {
  return script.call("pwrite", &h.connection, [&]() {
    PyRef fn = script.lookup("pwrite");
    if (!fn) throw ScriptError{"pwrite not implemented", false, true};
    if (script.apiVersion() == 1) {
      // API 1 scripts got a bytearray in-process: a private, writable copy.
      PyRef buffer = checked(PyByteArray_FromStringAndSize(
          reinterpret_cast<const char*>(bytes), static_cast<Py_ssize_t>(count)));
      checked(PyObject_CallFunction(fn.get(), "OOK", self(h), buffer.get(), at(offset)));
    } else {
      PyRef view = checked(PyMemoryView_FromMemory(
          reinterpret_cast<char*>(const_cast<uint8_t*>(bytes)), static_cast<Py_ssize_t>(count),
          PyBUF_READ));
      callWithView(view.get(), "pwrite", [&]() {
        return PyObject_CallFunction(fn.get(), "OOKI", self(h), view.get(), at(offset),
                                     flags);
      });
    }
  });
}

Outcome HandleCallbacks::flush(const OpenHandle& h, uint32_t flags) const {
  return script.call("flush", &h.connection, [&]() {
    PyRef fn = script.lookup("flush");
    if (!fn) throw ScriptError{"flush not implemented", false, true};
    if (script.apiVersion() == 1) {
      checked(PyObject_CallFunctionObjArgs(fn.get(), self(h), nullptr));
    } else {
      checked(PyObject_CallFunction(fn.get(), "OI", self(h), flags));
    }
  });
}

Outcome HandleCallbacks::open(bool readonly, ConnectionContext connection,
                              std::shared_ptr<OpenHandle>& opened) const {
  PyRef handle;
  Outcome outcome = script.call("open", &connection, [&]() {
    PyRef fn = script.lookup("open");
    if (!fn) throw ScriptError{"the script has no open function"};
    handle = checked(PyObject_CallFunctionObjArgs(fn.get(), readonly ? Py_True : Py_False,
                                                  nullptr));
  });
  if (outcome.ok()) {
    opened = std::make_shared<OpenHandle>(OpenHandle{std::move(handle), std::move(connection)});
  } else if (handle) {
    GilScope gil;  // open() returned, then failed (nbdkit.set_error): no handle after all
    handle = PyRef();
  }
  return outcome;
}

void HandleCallbacks::closeLeftOver(HandleTable& handles,
                                    std::chrono::milliseconds callWait) const {
  for (auto& open : handles.takeAll()) {
    // A correct plugin closes only after the connection's last call was answered; a plugin
    // that went away may have left one running, and close() must never overlap it.
    auto until = std::chrono::steady_clock::now() + callWait;
    while (open.use_count() > 1 && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    if (open.use_count() > 1) {
      // Hung: kept for good, so that the Python object is never dropped without the GIL
      // when that call does return (the worker ends without waiting for it).
      (void)new std::shared_ptr<OpenHandle>(std::move(open));
      continue;
    }
    Outcome outcome = close(*open);
    if (!outcome.ok()) host.error(outcome.message);
  }
}

Outcome HandleCallbacks::close(const OpenHandle& h) const {
  return script.call("close", &h.connection, [&]() {
    PyRef object = kj::mv(h.handle);
    if (!object) return;  // closed already
    if (PyRef fn = script.lookup("close")) {
      checked(PyObject_CallFunctionObjArgs(fn.get(), object.get(), nullptr));
    }
  });
}

Outcome HandleCallbacks::trim(const OpenHandle& h, uint32_t count, uint64_t offset,
                            uint32_t flags) const {
  return script.call("trim", &h.connection, [&]() {
    PyRef fn = script.lookup("trim");
    if (!fn) throw ScriptError{"trim not implemented", false, true};
    if (script.apiVersion() == 1) {
      checked(PyObject_CallFunction(fn.get(), "OIK", self(h), count, at(offset)));
    } else {
      checked(PyObject_CallFunction(fn.get(), "OIKI", self(h), count, at(offset), flags));
    }
  });
}

Outcome HandleCallbacks::zero(const OpenHandle& h, uint32_t count, uint64_t offset,
                            uint32_t flags) const {
  bool absent = false;
  Outcome outcome = script.call("zero", &h.connection, [&]() {
    PyRef fn = script.lookup("zero");
    if (!fn) {
      absent = true;
      return;
    }
    if (script.apiVersion() == 1) {
      PyObject* mayTrim = (flags & 1) ? Py_True : Py_False;  // NBDKIT_FLAG_MAY_TRIM
      checked(PyObject_CallFunction(fn.get(), "OIKO", self(h), count, at(offset),
                                    mayTrim));
    } else {
      checked(PyObject_CallFunction(fn.get(), "OIKI", self(h), count, at(offset), flags));
    }
  });
  // set_error(EOPNOTSUPP), raised or not, asks nbdkit to fall back to writing zeroes:
  // no error message then, as in-process.
  if (absent || outcome.requestedError == EOPNOTSUPP || outcome.requestedError == ENOTSUP) {
    host.debug(absent ? "plugin lacks zero, falling back to pwrite"
                      : "zero requested falling back to pwrite");
    outcome.error = absent ? EOPNOTSUPP : outcome.requestedError;
    outcome.message.clear();
  }
  return outcome;
}

Outcome HandleCallbacks::cache(const OpenHandle& h, uint32_t count, uint64_t offset,
                             uint32_t flags) const {
  return script.call("cache", &h.connection, [&]() {
    PyRef fn = script.lookup("cache");
    if (!fn) throw ScriptError{"cache not implemented", false, true};
    checked(PyObject_CallFunction(fn.get(), "OIKI", self(h), count, at(offset), flags));
  });
}

Outcome HandleCallbacks::extents(const OpenHandle& h, uint32_t count, uint64_t offset,
                               uint32_t flags, std::vector<ExtentValue>& extents) const {
  Outcome outcome = script.call("extents", &h.connection, [&]() {
    PyRef fn = script.lookup("extents");
    if (!fn) {
      // can_extents said yes without an extents callback: nbdkit python then reports the
      // whole range as data, without an error.
      extents = {ExtentValue{offset, count, 0}};
      return;
    }
    PyRef list = checked(PyObject_CallFunction(fn.get(), "OIKI", self(h), count,
                                               at(offset), flags));
    extents = toExtents(list.get(), "extents");
    checkExtents(extents, offset, count, "extents");
    shapeExtents(extents, offset);
  });
  if (outcome.ok() && extents.empty()) {
    // None covers the request (all before it): nbdkit's own check once the callback has
    // returned, with its message and errno, whatever the script set.
    outcome.error = EINVAL;
    outcome.message = "extents: plugin must return at least one extent";
  }
  return outcome;
}

}  // namespace pyworker
