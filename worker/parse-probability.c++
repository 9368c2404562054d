#include "parse-probability.h"

#include <cmath>
#include <cstdio>
#include <cstring>

namespace pyworker {

std::variant<double, ParseProbabilityError> parseProbability(const char* what, const char* text) {
  // The same sscanf() formats as nbdkit, so that whitespace, hex floats, "inf"/"nan" and exponents
  // are taken exactly as there. One difference: nbdkit scans "%[:/]" into a single char, so
  // "1::2" overflows its buffer and counts as 1/2; here the separator is one character and
  // "1::2" is refused.
  double value, divisor;
  char separator[2];
  int end = 0;
  bool ok;
  if (sscanf(text, "%lg%1[:/]%lg%n", &value, separator, &divisor, &end) == 3 &&
      text[end] == '\0') {
    if (value == 0.0 && divisor == 0.0) {
      ok = true;  // 0/0 is 0, as in nbdkit
    } else if (divisor == 0.0) {
      ok = false;
    } else {
      value /= divisor;
      ok = true;
    }
  } else if (sscanf(text, "%lg%n", &value, &end) == 1) {
    if (strcmp(text + end, "%") == 0) {
      value /= 100.0;
      ok = true;
    } else {
      ok = text[end] == '\0';
    }
  } else {
    ok = false;
  }
  if (!ok || !std::isfinite(value) || std::signbit(value)) {
    return ParseProbabilityError{std::string(what) + ": could not parse '" + text +
                                 "' as a probability"};
  }
  return value;
}

}  // namespace pyworker
