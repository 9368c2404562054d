// Python values returned by script callbacks → C++ values, with the checks the in-process
// plugin skips. Every function needs the GIL; a wrong value throws ScriptError naming the
// callback and what was wrong; a Python exception raised while converting (a failing
// iterator, say) throws PythonError.
#pragma once

#include "python-ref.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace pyworker {

std::string typeName(PyObject* object);

std::string lossyUtf8(PyObject* object);
// str(object) as UTF-8, never failing (unencodable characters become escapes): for messages.

std::string utf8(PyObject* value, const char* callback, const char* what);
// A str as strict UTF-8 (what nbdkit gets must be valid UTF-8: a lone surrogate is an error).
// `what` names the value in the message, e.g. "an export name".

bool toBool(PyObject* value);
// As the in-process plugin: only the exact True is true (1 is false).

int64_t toSize(PyObject* value, const char* callback);
// get_size: an int in 0..INT64_MAX.

int32_t toChoice(PyObject* value, const char* callback, int32_t maximum, const char* names);
// thread_model/can_fua/can_cache: an int in 0..maximum; `names` lists the constants for the
// message, e.g. "nbdkit.FUA_NONE, FUA_EMULATE or FUA_NATIVE".

struct BlockSize {
  uint32_t minimum = 0;
  uint32_t preferred = 0;
  uint32_t maximum = 0;
};
BlockSize toBlockSize(PyObject* value, const char* callback);
// A tuple of three ints in 0..UINT32_MAX that obey nbdkit's rules (all zero, or: minimum a
// power of 2 in 1..64K, preferred a power of 2 in 512..32M, maximum 0xffffffff or a multiple of
// minimum, minimum <= preferred <= maximum).

struct ExtentValue {
  uint64_t offset;
  uint64_t length;
  uint32_t type;
};
std::vector<ExtentValue> toExtents(PyObject* value, const char* callback);
// An iterable of (offset, length, type) tuples, at least one, converted as nbdkit python does
// (ints only, the type truncated to 32 bits), with its messages; an iterator raising
// part-way ends the list there.

void checkExtents(const std::vector<ExtentValue>& extents, uint64_t offset, uint32_t count,
                  const char* callback);
// For a request of `count` bytes at `offset`: the extents nbdkit_add_extent() would refuse
// (not contiguous, in its wrapping arithmetic; the first kept one starting after `offset`)
// throw ScriptError with nbdkit's message instead.

void shapeExtents(std::vector<ExtentValue>& extents, uint64_t offset);
// Checked extents for a request at `offset` → what nbdkit_add_extent() would keep of them, in
// its order of rules: empty extents and those wholly before `offset` dropped, the first one
// clipped to start at `offset`, neighbours of the same type merged, at most MAX_EXTENTS
// (rpc-limits.h) kept. So an honest answer of any length fits the reply (the plugin refuses
// more as a lie) and the client sees what nbdkit python would send. Clipping at the end of
// the export is left to the plugin's nbdkit_add_extent(): the worker does not know the size.

struct ExportValue {
  std::string name;
  std::string description;
  bool hasDescription = false;
};
std::vector<ExportValue> toExports(PyObject* value, const char* callback);
// An iterable of names or (name, description) tuples of str or bytes (textAsNbdkit), with
// nbdkit python's messages; an iterator raising part-way ends the list there.

std::optional<std::string> textAsNbdkit(PyObject* value, const char* callback,
                                        const char* what);
// nbdkit python's python_to_string(): a str or bytes up to its first NUL, or nullopt for
// anything else. A str must be valid UTF-8 (a lone surrogate crashes nbdkit python) and so
// must bytes (nbdkit python passes them on; pyworker refuses them).

}  // namespace pyworker
