#include "reply-checks.h"

#include <errno.h>
#include <string.h>

namespace pyworker {

namespace {

[[noreturn]] void workerFault(const std::string& what) {
  throw BadReply(BadReply::WORKER, "invalid reply from the worker: " + what);
}

[[noreturn]] void scriptFault(const std::string& what) {
  throw BadReply(BadReply::SCRIPT, "invalid reply from the worker: " + what);
}

bool isUtf8(std::string_view text) {
  // RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF.
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const auto* end = p + text.size();
  while (p < end) {
    unsigned char c = *p;
    size_t length;
    uint32_t min, value;
    if (c < 0x80) {
      ++p;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      length = 2, min = 0x80, value = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      length = 3, min = 0x800, value = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      length = 4, min = 0x10000, value = c & 0x07;
    } else {
      return false;
    }
    if (static_cast<size_t>(end - p) < length) return false;
    for (size_t i = 1; i < length; ++i) {
      if ((p[i] & 0xc0) != 0x80) return false;
      value = (value << 6) | (p[i] & 0x3f);
    }
    if (value < min || value > 0x10ffff || (value >= 0xd800 && value <= 0xdfff)) return false;
    p += length;
  }
  return true;
}

}  // namespace

void checkPreadSize(size_t received, uint32_t count) {
  if (received != count) {
    workerFault("pread returned " + std::to_string(received) + " bytes, expected " +
                std::to_string(count));
  }
}

void checkQueryAnswer(const char* callback, int32_t value, int32_t maximum) {
  if (value < 0 || value > maximum) {
    workerFault(std::string(callback) + " answered " + std::to_string(value));
  }
}

void checkSize(int64_t size) {
  if (size < 0) workerFault("get_size answered " + std::to_string(size));
}

void checkThreadModel(int32_t model) {
  if (model < 0 || model > 3) workerFault("thread_model answered " + std::to_string(model));
}

void checkText(std::string_view text, const char* what) {
  if (!isUtf8(text)) workerFault(std::string(what) + " is not valid UTF-8");
  if (text.size() > MAX_NAME_BYTES) {
    scriptFault(std::string(what) + " is too long (" + std::to_string(text.size()) +
                " bytes, at most " + std::to_string(MAX_NAME_BYTES) + ")");
  }
  if (memchr(text.data(), '\0', text.size()) != nullptr) {
    scriptFault(std::string(what) + " contains a NUL byte");
  }
}

void checkExportCount(size_t count) {
  if (count > MAX_EXPORTS) {
    scriptFault("list_exports returned " + std::to_string(count) + " exports, at most " +
                std::to_string(MAX_EXPORTS));
  }
}

void checkExtentCount(size_t count) {
  if (count == 0) workerFault("extents returned no extents");
  if (count > MAX_EXTENTS) {
    workerFault("extents returned " + std::to_string(count) + " extents, at most " +
                std::to_string(MAX_EXTENTS));
  }
}

void checkExtents(const std::vector<ExtentEntry>& extents) {
  for (size_t i = 0; i < extents.size(); ++i) {
    const auto& e = extents[i];
    // Formatted only for a fault: a list can hold a million extents.
    auto item = [&] {
      return "extent " + std::to_string(i) + " (" + std::to_string(e.offset) + ", " +
             std::to_string(e.length) + ", " + std::to_string(e.type) + ")";
    };
    // Any type and a length running past 2^64 are nbdkit's to handle, as for nbdkit python
    // (it sends type & 3, and its arithmetic wraps): only what nbdkit_add_extent() refuses
    // is refused, contiguity in the same wrapping 64-bit arithmetic.
    if (i > 0 && e.offset != extents[i - 1].offset + extents[i - 1].length) {
      scriptFault(item() + " does not start where the previous one ended (extents must be "
                  "contiguous, in ascending order)");
    }
  }
}

int errnoFromReply(int32_t error) {
  if (error == 0) return 0;
  return (error > 0 && error <= MAX_ERRNO) ? error : EIO;
}

}  // namespace pyworker
