// Owned Python references and GIL scopes: the only place that increments or decrements
// reference counts by hand.
#pragma once

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <utility>

namespace pyworker {

class PyRef {
  // One owned (strong) reference. WARNING: destroying or assigning a non-null PyRef needs the
  // GIL; code on the event-loop thread must move references away instead (see HandleServer).
public:
  PyRef() = default;
  explicit PyRef(PyObject* owned): object(owned) {}
  // Takes over a new reference, as returned by most of the C API (nullptr stays null).
  static PyRef borrow(PyObject* borrowed) {
    Py_XINCREF(borrowed);
    return PyRef(borrowed);
  }

  PyRef(PyRef&& other) noexcept: object(std::exchange(other.object, nullptr)) {}
  PyRef& operator=(PyRef&& other) noexcept {
    PyObject* old = std::exchange(object, std::exchange(other.object, nullptr));
    Py_XDECREF(old);
    return *this;
  }
  PyRef(const PyRef&) = delete;
  PyRef& operator=(const PyRef&) = delete;
  ~PyRef() { Py_XDECREF(object); }

  PyObject* get() const { return object; }
  PyObject* release() { return std::exchange(object, nullptr); }
  explicit operator bool() const { return object != nullptr; }

private:
  PyObject* object = nullptr;
};

class GilScope {
  // Holds the GIL for this thread (any thread: pool, loop during shutdown, script threads).
public:
  GilScope(): state(PyGILState_Ensure()) {}
  ~GilScope() { PyGILState_Release(state); }
  GilScope(const GilScope&) = delete;
  GilScope& operator=(const GilScope&) = delete;

private:
  PyGILState_STATE state;
};

class GilRelease {
  // Lets other Python threads run while this one blocks outside Python (host calls, sleeps).
public:
  GilRelease(): saved(PyEval_SaveThread()) {}
  ~GilRelease() { PyEval_RestoreThread(saved); }
  GilRelease(const GilRelease&) = delete;
  GilRelease& operator=(const GilRelease&) = delete;

private:
  PyThreadState* saved;
};

}  // namespace pyworker
