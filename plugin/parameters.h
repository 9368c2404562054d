#pragma once
// The key=value parameters nbdkit hands to the plugin: which belong to pyworker itself and which
// are the script's (forwarded in order, so a new worker can be configured exactly the same way).

#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pyworker {

class ParameterError : public std::runtime_error {
  // A bad key=value: the message is shown to the user as nbdkit_error() text.
public:
  using std::runtime_error::runtime_error;
};

class Parameters {
public:
  void accept(std::string_view key, std::string_view value);
  // Takes one key=value in command-line order. `script` must come first, as with
  // nbdkit python; pyworker's own keys may stand anywhere. Throws ParameterError.

  void checkComplete() const;
  // Throws ParameterError if nothing says which script to run.

  static bool isPyworkerKey(std::string_view key);
  // Keys consumed by pyworker and never shown to the script.

  const std::string& script() const { return script_; }
  const std::optional<std::string>& workerPath() const { return workerPath_; }
  const std::vector<std::pair<std::string, std::string>>& scriptConfig() const {
    return scriptConfig_;
  }

private:
  std::string script_;
  std::optional<std::string> workerPath_;
  std::vector<std::pair<std::string, std::string>> scriptConfig_;
};

}  // namespace pyworker
