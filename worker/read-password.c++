#include "read-password.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace pyworker {

namespace {

std::string errnoText(int error) { return strerror(error); }

// read_password_from_fd() of nbdkit: one line by getline(); EOF at once is an empty password.
std::variant<std::string, ReadPasswordError> firstLine(const char* what, int fd) {
  FILE* file = fdopen(fd, "r");
  if (!file) {
    int error = errno;
    close(fd);
    return ReadPasswordError{"fdopen " + std::string(what) + ": " + errnoText(error)};
  }
  char* line = nullptr;
  size_t size = 0;
  errno = 0;
  ssize_t length = getline(&line, &size, file);
  int error = errno;
  fclose(file);
  std::string password;
  if (length == -1) {
    free(line);
    if (error != 0) {
      return ReadPasswordError{"could not read password from " + std::string(what) + ": " +
                               errnoText(error)};
    }
    return password;
  }
  password.assign(line, length);
  free(line);
  if (!password.empty() && password.back() == '\n') password.pop_back();
  return password;
}

}  // namespace

std::variant<std::string, ReadPasswordError> readPassword(const char* value) {
  if (strcmp(value, "-") == 0) {
    return ReadPasswordError{"stdin is not available for reading password"};
  }
  if (value[0] == '-') {
    return ReadPasswordError{"cannot use password -FD under pyworker: the script runs in a "
                             "worker process, which does not have nbdkit's file descriptors "
                             "(use password=+FILE)"};
  }
  if (value[0] == '+') {
    int fd = open(value + 1, O_RDONLY | O_CLOEXEC);
    if (fd == -1) return ReadPasswordError{"open " + std::string(value + 1) + ": " + errnoText(errno)};
    return firstLine(value + 1, fd);
  }
  return std::string(value);
}

}  // namespace pyworker
