#include "parameters.h"

#include <array>

namespace pyworker {

namespace {

constexpr std::array<std::string_view, 2> PYWORKER_KEYS = {"script", "worker"};

}  // namespace

bool Parameters::isPyworkerKey(std::string_view key) {
  for (auto k : PYWORKER_KEYS) {
    if (k == key) return true;
  }
  return false;
}

void Parameters::accept(std::string_view key, std::string_view value) {
  if (key == "script") {
    if (!script_.empty()) {
      throw ParameterError("script parameter given more than once");
    }
    if (value.empty()) throw ParameterError("script parameter must not be empty");
    script_ = value;
  } else if (key == "worker") {
    if (value.empty()) throw ParameterError("worker parameter must not be empty");
    workerPath_ = std::string(value);
  } else {
    // Same rule as nbdkit python: the script must be known before its parameters, because
    // in-process the script's config() is what receives them.
    if (script_.empty()) {
      throw ParameterError("the first parameter must be script=/path/to/script.py");
    }
    scriptConfig_.emplace_back(key, value);
  }
}

void Parameters::checkComplete() const {
  if (script_.empty()) {
    throw ParameterError(
        "no script given: use 'nbdkit pyworker script=/path/to/script.py [key=value...]'");
  }
}

}  // namespace pyworker
