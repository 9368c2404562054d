#pragma once
// What the plugin checks in a worker's reply before any of it reaches nbdkit. Pure: no nbdkit
// calls, no RPC; the callbacks in plugin.c++ copy the reply's fields out and run these.
//
// The worker runs arbitrary Python and is untrusted. A reply can be wrong in two ways:
// - the script's fault, relayed by a correct worker (an export name with a NUL byte, extents
//   out of order, ...): nbdkit python would fail the request too, so the request fails and the
//   worker keeps serving (BadReply::SCRIPT);
// - something a correct worker never sends (a pread of the wrong length, a query answer out of
//   range, text that is not UTF-8, ...): the worker itself is broken (a C extension scribbled
//   over it, say), so the request fails and the worker is replaced (BadReply::WORKER).

#include <stdint.h>

#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "rpc-limits.h"

namespace pyworker {

class BadReply : public std::runtime_error {
public:
  enum Blame { SCRIPT, WORKER };
  BadReply(Blame blame, const std::string& what) : std::runtime_error(what), blame(blame) {}
  Blame blame;
};

constexpr size_t MAX_NAME_BYTES = 4096;
// NBD's limit on export names and descriptions (NBD_MAX_STRING).
constexpr size_t MAX_EXPORTS = 10000;
// nbdkit_add_export() refuses more (nbdkit's MAX_EXPORTS).
constexpr int MAX_ERRNO = 4095;

void checkPreadSize(size_t received, uint32_t count);
// WORKER: the worker always sends exactly `count` bytes on success.

void checkQueryAnswer(const char* callback, int32_t value, int32_t maximum);
// WORKER: booleans are 0/1, FUA and cache modes 0..2.

void checkSize(int64_t size);
// WORKER: get_size answers are never negative.

void checkThreadModel(int32_t model);
// WORKER: 0..3 (NBDKIT_THREAD_MODEL_*).

void checkText(std::string_view text, const char* what);
// Export names, descriptions, default export: not UTF-8 is WORKER (it encodes str as UTF-8);
// a NUL byte or more than MAX_NAME_BYTES is SCRIPT.

void checkExportCount(size_t count);
// SCRIPT: more than MAX_EXPORTS.

struct ExtentEntry {
  uint64_t offset;
  uint64_t length;
  uint32_t type;
};

void checkExtentCount(size_t count);
// Before copying: none at all, or more than MAX_EXTENTS (rpc-limits.h), is WORKER: it refuses
// an empty list and shapes a long one as nbdkit would.

void checkExtents(const std::vector<ExtentEntry>& extents);
// SCRIPT: every extent starts where the previous one ended (ascending, contiguous, in
// nbdkit_add_extent()'s wrapping 64-bit arithmetic). Any type, and extents before, after or
// running past the request (or past 2^64) are allowed: nbdkit clips them and sends type & 3,
// as for nbdkit python.

int errnoFromReply(int32_t error);
// The errno a failed reply carries, to hand to nbdkit_set_error(): 1..MAX_ERRNO as given,
// anything else (a script's nbdkit.set_error(-5), junk) becomes EIO. 0 stays 0 (success).

}  // namespace pyworker
