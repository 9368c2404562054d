#include "parse-size.h"

#include <cerrno>
#include <cinttypes>
#include <cstdlib>

namespace pyworker {

std::variant<int64_t, ParseSizeError> parseSize(const char* text) {
  std::string str(text);
  errno = 0;
  char* end;
  intmax_t size = strtoimax(text, &end, 10);
  if (end == text) {
    return ParseSizeError{"could not parse size string (" + str + ")"};
  }
  if (size < 0) {
    return ParseSizeError{"size cannot be negative (" + str + ")"};
  }
  if (errno != 0) {
    return ParseSizeError{"size (" + str + ") exceeds maximum value"};
  }

  uint64_t scale = 1;
  switch (*end) {
  case '\0':
    --end;  // nbdkit's trick: end[1] below is then the terminator
    break;
  case 'e': case 'E': scale *= 1024; [[fallthrough]];
  case 'p': case 'P': scale *= 1024; [[fallthrough]];
  case 't': case 'T': scale *= 1024; [[fallthrough]];
  case 'g': case 'G': scale *= 1024; [[fallthrough]];
  case 'm': case 'M': scale *= 1024; [[fallthrough]];
  case 'k': case 'K': scale *= 1024; [[fallthrough]];
  case 'b': case 'B':
    break;
  case 's': case 'S':
    scale = 512;  // "sectors", whatever the real sector size
    break;
  default:
    return ParseSizeError{"could not parse size: unknown suffix '" + std::string(end) + "'"};
  }
  if (end[1] != '\0') {
    return ParseSizeError{"could not parse size: unknown suffix '" + std::string(end) + "'"};
  }
  if (static_cast<uint64_t>(INT64_MAX) / scale < static_cast<uint64_t>(size)) {
    return ParseSizeError{"overflow computing size (" + str + ")"};
  }
  return static_cast<int64_t>(size * scale);
}

}  // namespace pyworker
