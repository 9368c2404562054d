// nbdkit_parse_size() of nbdkit 1.32, ported exactly (same accepted strings, same messages),
// because the worker has no libnbdkit to call.
#pragma once

#include <cstdint>
#include <string>
#include <variant>

namespace pyworker {

struct ParseSizeError {
  std::string message;  // the text nbdkit_error() would print, e.g. "size cannot be negative (-1)"
};

std::variant<int64_t, ParseSizeError> parseSize(const char* text);

}  // namespace pyworker
