#include "value-conversions.h"

#include "rpc-limits.h"

#include "script.h"

#include <cstring>
#include <limits>
#include <optional>
#include <utility>

namespace pyworker {

namespace {

std::string repr(PyObject* value) {
  PyRef text(PyObject_Repr(value));
  if (!text) {
    PyErr_Clear();
    return "<" + typeName(value) + ">";
  }
  return lossyUtf8(text.get());
}

__int128 intInRange(PyObject* value, const std::string& callback, const std::string& what,
                    __int128 minimum, __int128 maximum) {
  // Messages: "<callback> returned <value>[ as <what>], expected ...".
  std::string as = what.empty() ? "" : " as " + what;
  PyRef index;
  if (!PyLong_Check(value) && PyIndex_Check(value)) {
    // nbdkit python converts with PyLong_AsLong() and friends, which take any object with
    // __index__ (Python 3.10 and later).
    index = checked(PyNumber_Index(value));
    value = index.get();
  }
  if (!PyLong_Check(value)) {
    throw ScriptError{callback + " returned '" + typeName(value) + "'" + as + ", expected int"};
  }
  int overflow = 0;
  __int128 result = PyLong_AsLongLongAndOverflow(value, &overflow);
  if (overflow > 0) {
    unsigned long long big = PyLong_AsUnsignedLongLong(value);
    if (PyErr_Occurred()) {
      PyErr_Clear();
      result = maximum + 1;
    } else {
      result = big;
    }
  } else if (overflow < 0) {
    result = minimum - 1;
  } else if (result == -1 && PyErr_Occurred()) {
    throw PythonError{};
  }
  if (result < minimum || result > maximum) {
    auto decimal = [](__int128 n) {
      return n < 0 ? std::to_string(static_cast<long long>(n))
                   : std::to_string(static_cast<unsigned long long>(n));
    };
    throw ScriptError{callback + " returned " + repr(value) + as + ", expected an int between " +
                      decimal(minimum) + " and " + decimal(maximum)};
  }
  return result;
}

}  // namespace

std::string typeName(PyObject* object) { return Py_TYPE(object)->tp_name; }

std::string lossyUtf8(PyObject* object) {
  PyRef text(PyUnicode_Check(object) ? PyRef::borrow(object).release() : PyObject_Str(object));
  if (text) {
    PyRef bytes(PyUnicode_AsEncodedString(text.get(), "utf-8", "backslashreplace"));
    if (bytes) return std::string(PyBytes_AS_STRING(bytes.get()), PyBytes_GET_SIZE(bytes.get()));
  }
  PyErr_Clear();
  return "<unprintable " + typeName(object) + ">";
}

std::string utf8(PyObject* value, const char* callback, const char* what) {
  if (!PyUnicode_Check(value)) {
    throw ScriptError{std::string(callback) + " returned '" + typeName(value) +
                      "' as " + what + ", expected str"};
  }
  Py_ssize_t size;
  const char* data = PyUnicode_AsUTF8AndSize(value, &size);
  if (!data) {
    std::string why = "?";
    if (PyErr_ExceptionMatches(PyExc_UnicodeError)) {
      PyObject *type, *error, *trace;
      PyErr_Fetch(&type, &error, &trace);
      PyRef typeRef(type), errorRef(error), traceRef(trace);
      why = error ? lossyUtf8(error) : "not UTF-8";
    } else {
      throw PythonError{};
    }
    throw ScriptError{std::string(callback) + " returned " + what + " " + repr(value) +
                      " that is not valid UTF-8 (" + why + ")"};
  }
  return std::string(data, size);
}

bool toBool(PyObject* value) { return value == Py_True; }

int64_t toSize(PyObject* value, const char* callback) {
  return static_cast<int64_t>(
      intInRange(value, callback, "", 0, std::numeric_limits<int64_t>::max()));
}

int32_t toChoice(PyObject* value, const char* callback, int32_t maximum, const char* names) {
  std::string subject = std::string(callback) + " returned";
  if (!PyLong_Check(value) && !PyIndex_Check(value)) {
    throw ScriptError{subject + " '" + typeName(value) + "', expected " + names};
  }
  try {
    return static_cast<int32_t>(intInRange(value, callback, "", 0, maximum));
  } catch (ScriptError&) {
    throw ScriptError{subject + " " + repr(value) + ", expected " + names};
  }
}

BlockSize toBlockSize(PyObject* value, const char* callback) {
  std::string subject = std::string(callback) + " returned";
  if (!PyTuple_Check(value) || PyTuple_GET_SIZE(value) != 3) {
    throw ScriptError{subject + " " +
                      (PyTuple_Check(value) ? "a tuple of " +
                           std::to_string(PyTuple_GET_SIZE(value)) + " items"
                                            : "'" + typeName(value) + "'") +
                      ", expected a tuple (minimum, preferred, maximum)"};
  }
  const char* names[] = {"minimum", "preferred", "maximum"};
  uint32_t sizes[3];
  for (int i = 0; i < 3; ++i) {
    sizes[i] = static_cast<uint32_t>(
        intInRange(PyTuple_GET_ITEM(value, i), callback, std::string("the ") + names[i], 0,
                   std::numeric_limits<uint32_t>::max()));
  }
  // nbdkit's own rules (server/plugins.c in 1.32), checked here so that the message names the
  // script and the callback; nbdkit would refuse exactly the same triples.
  auto powerOf2 = [](uint32_t n) { return n != 0 && (n & (n - 1)) == 0; };
  const char* broken = nullptr;
  if (sizes[0] == 0 && sizes[1] == 0 && sizes[2] == 0) {
    // no information
  } else if (sizes[0] < 1 || sizes[0] > 65536) {
    broken = "the minimum must be between 1 and 65536";
  } else if (!powerOf2(sizes[0])) {
    broken = "the minimum must be a power of 2";
  } else if (!powerOf2(sizes[1])) {
    broken = "the preferred size must be a power of 2";
  } else if (sizes[1] < 512 || sizes[1] > 32 * 1024 * 1024) {
    broken = "the preferred size must be between 512 and 32M";
  } else if (sizes[2] != 0xffffffff && sizes[2] % sizes[0] != 0) {
    broken = "the maximum must be 0xffffffff or a multiple of the minimum";
  } else if (sizes[0] > sizes[1] || sizes[1] > sizes[2]) {
    broken = "expected minimum <= preferred <= maximum";
  }
  if (broken) throw ScriptError{subject + " " + repr(value) + ": " + broken};
  return BlockSize{sizes[0], sizes[1], sizes[2]};
}

namespace {

template <typename Each>
void iterateAsNbdkit(PyObject* value, const char* notIterable, Each&& each) {
  // As nbdkit python's loops: a value that is not iterable fails with its message (the
  // TypeError is not shown); an exception raised by the iterator part-way ends the list there,
  // silently, and what was yielded before it counts.
  PyRef iterator(PyObject_GetIter(value));
  if (!iterator) {
    PyErr_Clear();
    throw ScriptError{notIterable, false, true};
  }
  for (;;) {
    PyRef item(PyIter_Next(iterator.get()));
    if (!item) {
      PyErr_Clear();
      return;
    }
    each(item.get());
  }
}

uint64_t unsignedAsNbdkit(PyObject* value, bool longLong) {
  // PyLong_AsUnsignedLongLong / PyLong_AsUnsignedLong: an int only (no __index__), in range.
  // Leaves the exception pending, as nbdkit python does before it checks all three.
  if (longLong) return PyLong_AsUnsignedLongLong(value);
  return PyLong_AsUnsignedLong(value);
}

}  // namespace

std::optional<std::string> textAsNbdkit(PyObject* value, const char* callback,
                                        const char* what) {
  // nbdkit python's python_to_string(): a str (as UTF-8) or bytes, copied with strdup(), so
  // that a NUL ends it; anything else is "not a string".
  std::string text;
  if (PyUnicode_Check(value)) {
    text = utf8(value, callback, what);
  } else if (PyBytes_Check(value)) {
    text.assign(PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value));
  } else {
    return std::nullopt;
  }
  text.resize(strnlen(text.data(), text.size()));
  if (PyBytes_Check(value)) {
    PyRef decoded(PyUnicode_DecodeUTF8(text.data(), static_cast<Py_ssize_t>(text.size()),
                                       "strict"));
    if (!decoded) {
      // WARNING: nbdkit python passes such bytes on; nbdkit and NBD clients expect UTF-8.
      PyErr_Clear();
      throw ScriptError{std::string(callback) + " returned " + what + " " + repr(value) +
                        " that is not valid UTF-8"};
    }
  }
  return text;
}

std::vector<ExtentValue> toExtents(PyObject* value, const char* callback) {
  std::vector<ExtentValue> extents;
  iterateAsNbdkit(value, "extents method did not return something which is iterable",
                  [&](PyObject* item) {
    if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 3) {
      throw ScriptError{"extents method did not return an iterable of 3-tuples", false, true};
    }
    uint64_t offset = unsignedAsNbdkit(PyTuple_GET_ITEM(item, 0), true);
    uint64_t length = unsignedAsNbdkit(PyTuple_GET_ITEM(item, 1), true);
    // PyLong_AsUnsignedLong() into a uint32_t: 2**32 + 3 is 3, as in-process.
    auto type = static_cast<uint32_t>(unsignedAsNbdkit(PyTuple_GET_ITEM(item, 2), false));
    if (PyErr_Occurred()) throw PythonError{"PyLong"};
    extents.push_back(ExtentValue{offset, length, type});
  });
  (void)callback;
  if (extents.empty()) {
    throw ScriptError{"extents method cannot return an empty list", false, true};
  }
  return extents;
}

void checkExtents(const std::vector<ExtentValue>& extents, uint64_t offset, uint32_t count,
                  const char* callback) {
  // What nbdkit_add_extent() refuses, for a request of `count` bytes at `offset`, with its
  // messages and its (wrapping, 64-bit) arithmetic, so that the plugin never hands nbdkit a
  // list it would refuse half-way. Extents it ignores or clips are passed on as they are.
  (void)callback;
  uint64_t end = offset + count;
  bool any = false;  // nbdkit has kept an extent
  uint64_t next = 0;
  for (size_t i = 0; i < extents.size(); ++i) {
    const ExtentValue& e = extents[i];
    if (i > 0 && e.offset != next) {
      throw ScriptError{"nbdkit_add_extent: extents must be added in ascending order and "
                        "must be contiguous", false, true};
    }
    next = e.offset + e.length;
    if (e.length == 0 || e.offset >= end || any) continue;
    uint64_t length = e.offset + e.length > end ? e.length - (e.offset + e.length - end)
                                                : e.length;
    if (e.offset + length <= offset) continue;
    if (e.offset > offset) {
      throw ScriptError{"nbdkit_add_extent: first extent must not be > start (" +
                        std::to_string(offset) + ")", false, true};
    }
    any = true;
  }
}

void shapeExtents(std::vector<ExtentValue>& extents, uint64_t offset) {
  // In place: `kept` never overtakes the extent being read.
  size_t kept = 0;
  for (size_t i = 0; i < extents.size(); ++i) {
    ExtentValue e = extents[i];
    if (e.length == 0) continue;
    if (kept == MAX_EXTENTS) break;  // nbdkit ignores the rest, merging none of them
    if (kept == 0) {
      if (static_cast<unsigned __int128>(e.offset) + e.length <= offset) continue;
      if (e.offset < offset) {
        e.length -= offset - e.offset;
        e.offset = offset;
      }
      // One that starts after `offset` (beyond the request: checkExtents() lets it through)
      // is left for nbdkit_add_extent() to refuse, or to ignore if it is past the export.
    }
    if (kept > 0 && extents[kept - 1].type == e.type) {
      extents[kept - 1].length += e.length;
    } else {
      extents[kept++] = e;
    }
  }
  extents.resize(kept);
}

std::vector<ExportValue> toExports(PyObject* value, const char* callback) {
  std::vector<ExportValue> exports;
  iterateAsNbdkit(value, "list_exports method did not return something which is iterable",
                  [&](PyObject* item) {
    ExportValue entry;
    if (auto plain = textAsNbdkit(item, callback, "an export name")) {
      entry.name = *plain;
    } else {
      if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2) {
        throw ScriptError{"list_exports method did not return an iterable of 2-tuples", false,
                          true};
      }
      auto name = textAsNbdkit(PyTuple_GET_ITEM(item, 0), callback, "an export name");
      auto description =
          textAsNbdkit(PyTuple_GET_ITEM(item, 1), callback, "an export description");
      if (!name || !description) {
        throw ScriptError{"list_exports method did not return an iterable of string 2-tuples",
                          false, true};
      }
      entry.name = *name;
      entry.description = *description;
      entry.hasDescription = true;
    }
    exports.push_back(std::move(entry));
  });
  return exports;
}

}  // namespace pyworker
