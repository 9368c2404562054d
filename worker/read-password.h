// nbdkit.read_password() (nbdkit's python plugin ≥ 1.38), done in the worker with
// nbdkit_read_password()'s rules for what the worker can reach: the password itself, and
// "+FILE" (the file's first line, without its newline; relative to nbdkit's directory, which the
// worker shares during configuration). "-" (prompt) finds stdin unavailable, as nbdkit does under
// -s: the worker's stdin is /dev/null. "-FD" names one of nbdkit's descriptors, which the worker
// does not have: refused with that reason.
#pragma once

#include <string>
#include <variant>

namespace pyworker {

struct ReadPasswordError {
  std::string message;  // for nbdkit_error(), e.g. "open /nonexistent: No such file or directory"
};

std::variant<std::string, ReadPasswordError> readPassword(const char* value);

}  // namespace pyworker
