// nbdkit_parse_delay() of nbdkit ≥ 1.40 (server/public.c), ported so that a script's
// nbdkit.parse_delay() behaves the same under every nbdkit, 1.32 included: it is pure parsing,
// and the worker has no libnbdkit to call anyway.
#pragma once

#include <string>
#include <variant>

namespace pyworker {

struct Delay {
  unsigned seconds;
  unsigned nanoseconds;  // < 1000000000: the pair goes straight to nanosleep
};

struct ParseDelayError {
  std::string message;  // the text nbdkit_error() prints, e.g. "delay: could not parse delay or sleep: \"-1\""
};

// "1", "1.2", "1.2s", "1.2ms", "120ms", "1.2us", "1.2μs", "1ns". Negative, NaN, infinite and
// trailing junk are refused as by nbdkit; so is a delay of 2^32 seconds or more, which nbdkit
// converts to `unsigned` without a check (undefined behaviour: on x86-64 it wraps).
std::variant<Delay, ParseDelayError> parseDelay(const char* what, const char* text);

}  // namespace pyworker
