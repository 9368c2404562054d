#include "parse-delay.h"

#include <cmath>
#include <cstdio>
#include <cstring>

namespace pyworker {

std::variant<Delay, ParseDelayError> parseDelay(const char* what, const char* text) {
  auto refused = [&](const char* problem) {
    return ParseDelayError{std::string(what) + ": " + problem + ": \"" + text + "\""};
  };
  // The same sscanf() format and the same divisions as nbdkit, so that every accepted string
  // gives the same (sec, nsec) to the nanosecond.
  double delay;
  int end = 0;
  if (sscanf(text, "%lg%n", &delay, &end) != 1) return refused("could not parse delay or sleep");
  const char* unit = text + end;
  if (strcmp(unit, "s") == 0 || strcmp(unit, "") == 0) {
    // seconds
  } else if (strcmp(unit, "ms") == 0) {
    delay /= 1000;
  } else if (strcmp(unit, "us") == 0 || strcmp(unit, "μs") == 0) {
    delay /= 1000000;
  } else if (strcmp(unit, "ns") == 0) {
    delay /= 1000000000;
  } else {
    return refused("could not parse delay or sleep");
  }
  if (!std::isfinite(delay) || std::signbit(delay)) {
    return refused("could not parse delay or sleep");
  }
  if (delay >= 4294967296.0) {
    return refused("delay or sleep too long (the longest is 4294967295.999999999s)");
  }
  Delay result;
  result.seconds = static_cast<unsigned>(delay);
  double nanoseconds = (delay - result.seconds) * 1000000000.;
  result.nanoseconds = nanoseconds < 999999999. ? static_cast<unsigned>(nanoseconds) : 999999999u;
  return result;
}

}  // namespace pyworker
