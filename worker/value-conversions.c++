#include "value-conversions.h"

#include "rpc-limits.h"

#include "script.h"

#include <limits>
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

template <typename Each>
void forEachItem(PyObject* value, const std::string& expected, Each&& each) {
  PyRef iterator(PyObject_GetIter(value));
  if (!iterator) {
    if (!PyErr_ExceptionMatches(PyExc_TypeError)) throw PythonError{};
    PyErr_Clear();
    throw ScriptError{"returned '" + typeName(value) + "', expected " + expected};
  }
  size_t index = 0;
  for (;;) {
    PyRef item(PyIter_Next(iterator.get()));
    if (!item) {
      if (PyErr_Occurred()) throw PythonError{};
      return;
    }
    each(item.get(), index++);
  }
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
  if (!PyLong_Check(value)) {
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

std::vector<ExtentValue> toExtents(PyObject* value, const char* callback) {
  std::string expected = "an iterable of (offset, length, type) tuples";
  std::vector<ExtentValue> extents;
  try {
    forEachItem(value, expected, [&](PyObject* item, size_t index) {
      std::string of = " of item " + std::to_string(index);
      if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 3) {
        throw ScriptError{std::string(callback) + " returned '" + typeName(item) +
                          "' " + repr(item) + " as item " + std::to_string(index) +
                          ", expected an (offset, length, type) tuple"};
      }
      auto offset = intInRange(PyTuple_GET_ITEM(item, 0), callback, "the offset" + of, 0,
                               std::numeric_limits<uint64_t>::max());
      auto length = intInRange(PyTuple_GET_ITEM(item, 1), callback, "the length" + of, 0,
                               std::numeric_limits<uint64_t>::max());
      auto type = intInRange(PyTuple_GET_ITEM(item, 2), callback, "the type" + of, 0,
                             std::numeric_limits<uint32_t>::max());
      extents.push_back(ExtentValue{static_cast<uint64_t>(offset),
                                    static_cast<uint64_t>(length),
                                    static_cast<uint32_t>(type)});
    });
  } catch (ScriptError& e) {
    if (e.message.rfind("returned '", 0) == 0) e.message = callback + (" " + e.message);
    throw;
  }
  if (extents.empty()) {
    throw ScriptError{std::string(callback) + " returned no extents, expected at least one"};
  }
  return extents;
}

void checkExtents(const std::vector<ExtentValue>& extents, uint64_t offset, uint32_t count,
                  const char* callback) {
  // The rules nbdkit_add_extent() enforces, for a request of `count` bytes at `offset`, checked
  // here so that the message names the script and the callback. Only what nbdkit certainly
  // refuses is refused: every extent must start where the previous one ended; the first one
  // that nbdkit keeps (non-empty, not wholly before `offset`) must not start after `offset`.
  using u128 = unsigned __int128;
  auto show = [](const ExtentValue& e) {
    return "(" + std::to_string(e.offset) + ", " + std::to_string(e.length) + ", " +
           std::to_string(e.type) + ")";
  };
  bool kept = false;  // nbdkit has kept an extent, or may have (we cannot tell): stop checking
  u128 next = 0;
  for (size_t i = 0; i < extents.size(); ++i) {
    const ExtentValue& e = extents[i];
    if (i > 0 && e.offset != next) {
      throw ScriptError{std::string(callback) + " returned " + show(e) + " as item " +
                        std::to_string(i) + ", expected offset " +
                        std::to_string(static_cast<uint64_t>(next)) +
                        " (extents must be contiguous, in ascending order)"};
    }
    next = static_cast<u128>(e.offset) + e.length;
    if (kept || e.length == 0 || next <= offset) continue;
    if (e.offset > offset && e.offset < static_cast<u128>(offset) + count) {
      throw ScriptError{std::string(callback) + " returned " + show(e) + " as item " +
                        std::to_string(i) + ", which starts after the requested offset " +
                        std::to_string(offset) + " (the first extent must cover it)"};
    }
    kept = true;
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
  std::string expected = "an iterable of names or (name, description) tuples";
  std::vector<ExportValue> exports;
  try {
    forEachItem(value, expected, [&](PyObject* item, size_t index) {
      ExportValue entry;
      if (PyUnicode_Check(item)) {
        entry.name = utf8(item, callback, "an export name");
      } else if (PyTuple_Check(item) && PyTuple_GET_SIZE(item) == 2) {
        entry.name = utf8(PyTuple_GET_ITEM(item, 0), callback, "an export name");
        entry.description =
            utf8(PyTuple_GET_ITEM(item, 1), callback, "an export description");
        entry.hasDescription = true;
      } else {
        throw ScriptError{std::string(callback) + " returned '" + typeName(item) + "' " +
                          repr(item) + " as item " + std::to_string(index) +
                          ", expected a name or a (name, description) tuple"};
      }
      exports.push_back(std::move(entry));
    });
  } catch (ScriptError& e) {
    if (e.message.rfind("returned '", 0) == 0) e.message = callback + (" " + e.message);
    throw;
  }
  return exports;
}

}  // namespace pyworker
