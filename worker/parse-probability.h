// nbdkit_parse_probability() of nbdkit ≥ 1.36 (server/public.c), ported so that a script's
// nbdkit.parse_probability() behaves the same under every nbdkit, 1.32 included: it is pure
// parsing, and the worker has no libnbdkit to call anyway.
#pragma once

#include <string>
#include <variant>

namespace pyworker {

struct ParseProbabilityError {
  std::string message;  // the text nbdkit_error() prints, e.g. "p: could not parse '-1' as a probability"
};

// "0.1", "1e-1", "10%", "1:10", "1/10" → 0.1. The result is finite and not negative (-0 is
// refused too); it may exceed 1 ("200%" is 2.0). `what` names the parameter in the message.
std::variant<double, ParseProbabilityError> parseProbability(const char* what, const char* text);

}  // namespace pyworker
