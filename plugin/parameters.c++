#include "parameters.h"

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

namespace pyworker {

namespace {

constexpr unsigned MAX_WORKERS = 64;

constexpr uint64_t MINIMUM_MEMORY = 256 * 1024 * 1024;
// Below this a worker cannot even start: an embedded Python, its threads' stacks and malloc
// arenas, and the 66 MiB of shared data memory all count against RLIMIT_AS.
constexpr uint64_t MINIMUM_THREAD_STACK = 128 * 1024;
// musl's default thread stack, on which nbdkit and its filters are built and tested.
constexpr uint64_t MAXIMUM_THREAD_STACK = 1024 * 1024 * 1024;
constexpr double MAXIMUM_SECONDS = 365.0 * 24 * 3600;

unsigned parseCount(const std::string& key, const std::string& value) {
  char* end = nullptr;
  errno = 0;
  unsigned long n = std::strtoul(value.c_str(), &end, 10);
  if (value.empty() || *end != '\0' || errno != 0 || value[0] == '-' || n > 1000000) {
    throw ParameterError(key + "=" + value + ": expected a whole number");
  }
  return static_cast<unsigned>(n);
}

std::optional<unsigned long> parseId(const std::string& text) {
  // A user or group number: 4294967295 is (uid_t)-1, which set*id() takes as "unchanged", and
  // anything larger would wrap (4294967296 to root).
  if (text.empty() || text.size() > 10) return std::nullopt;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
  }
  unsigned long id = std::stoul(text);
  if (id >= 0xFFFFFFFFul) return std::nullopt;
  return id;
}

struct UserEntry {
  uid_t uid;
  gid_t gid;
};

std::optional<UserEntry> lookUpUser(const std::string& name) {
  // Config time, on nbdkit's main thread: the reentrant call all the same (NSS may be slow,
  // never shared).
  passwd entry, *found = nullptr;
  std::vector<char> buffer(16384);
  if (getpwnam_r(name.c_str(), &entry, buffer.data(), buffer.size(), &found) == 0 && found) {
    return UserEntry{found->pw_uid, found->pw_gid};
  }
  if (auto id = parseId(name)) {
    if (getpwuid_r(static_cast<uid_t>(*id), &entry, buffer.data(), buffer.size(), &found) == 0 &&
        found) {
      return UserEntry{found->pw_uid, found->pw_gid};
    }
    return UserEntry{static_cast<uid_t>(*id), static_cast<gid_t>(*id)};  // as nbdkit -u 1000
  }
  return std::nullopt;
}

std::optional<gid_t> lookUpGroup(const std::string& name) {
  group entry, *found = nullptr;
  std::vector<char> buffer(16384);
  if (getgrnam_r(name.c_str(), &entry, buffer.data(), buffer.size(), &found) == 0 && found) {
    return found->gr_gid;
  }
  if (auto id = parseId(name)) return static_cast<gid_t>(*id);
  return std::nullopt;
}

}  // namespace

SandboxPath parseSandboxAllow(const std::string& value) {
  SandboxPath result;
  std::string path = value;
  auto ends = [&](const char* suffix) {
    size_t n = strlen(suffix);
    return path.size() >= n && path.compare(path.size() - n, n, suffix) == 0;
  };
  if (ends(":ro")) {
    result.readOnly = true;
    path.resize(path.size() - 3);
  } else if (ends(":rw")) {
    path.resize(path.size() - 3);
  }
  if (path.empty()) throw ParameterError("sandbox-allow parameter must name a path");
  char* resolved = realpath(path.c_str(), nullptr);
  if (resolved == nullptr) {
    throw ParameterError("sandbox-allow=" + value + ": " + strerror(errno));
  }
  result.path = resolved;
  free(resolved);
  if (result.path == "/" && !result.readOnly) {
    // Writing anywhere is no sandbox: said, not silently accepted.
    throw ParameterError("sandbox-allow=" + value +
                         ": the whole file system cannot be allowed for writing");
  }
  return result;
}

std::string directoryOf(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

void checkWatchableDirectory(const std::string& key, const std::string& path) {
  // Now, at configuration time: a watch that fails in after_fork fails where the user may not
  // look (a daemon has already detached, and dies without a word on the terminal).
  std::string directory = directoryOf(path);
  struct stat st;
  const char* problem = nullptr;
  std::string reason;
  if (stat(directory.c_str(), &st) < 0) {
    reason = strerror(errno);
    problem = errno == ENOENT ? "does not exist" : "cannot be examined";
  } else if (!S_ISDIR(st.st_mode)) {
    problem = "is not a directory";
  } else if (access(directory.c_str(), R_OK) < 0) {
    reason = strerror(errno);
    problem = "cannot be watched";
  }
  if (problem == nullptr) return;
  throw ParameterError(key + "=" + path + ": the directory " + directory + " " + problem +
                       (reason.empty() ? "" : " (" + reason + ")"));
}

std::chrono::milliseconds Parameters::parseSeconds(const std::string& key,
                                                  const std::string& value, double minimum) {
  char* end = nullptr;
  errno = 0;
  double seconds = std::strtod(value.c_str(), &end);
  if (value.empty() || *end != '\0' || errno != 0 || !std::isfinite(seconds) ||
      seconds < minimum || seconds > MAXIMUM_SECONDS) {
    char least[32];
    snprintf(least, sizeof(least), "%g", minimum);
    throw ParameterError(key + "=" + value + ": expected a number of seconds, at least " +
                         least);
  }
  return std::chrono::milliseconds(static_cast<int64_t>(std::llround(seconds * 1000)));
}

bool Parameters::parseBool(const std::string& key, const std::string& value) {
  std::string lower;
  for (char c : value) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (lower == "1" || lower == "true" || lower == "yes" || lower == "on") return true;
  if (lower == "0" || lower == "false" || lower == "no" || lower == "off") return false;
  throw ParameterError(key + "=" + value + ": expected a boolean (1/0, true/false, yes/no, on/off)");
}

void Parameters::accept(std::string_view keyView, std::string_view valueView) {
  std::string key(keyView), value(valueView);
  if (key == "reload") {
    if (value == "on-change") {
      reloadOnChange_ = true;
    } else if (value == "off") {
      reloadOnChange_ = false;
    } else {
      throw ParameterError("reload=" + value + ": expected on-change or off");
    }
  } else if (key == "recover") {
    if (value == "reopen") {
      recoverByReopening_ = true;
    } else if (value == "off") {
      recoverByReopening_ = false;
    } else {
      throw ParameterError("recover=" + value + ": expected reopen or off");
    }
  } else if (key == "reload-trigger") {
    if (value.empty()) throw ParameterError("reload-trigger parameter must not be empty");
    checkWatchableDirectory(key, value);
    reloadTrigger_ = value;
  } else if (key == "workers") {
    workers_ = parseCount(key, value);
    if (workers_ < 1 || workers_ > MAX_WORKERS) {
      throw ParameterError("workers=" + value + ": expected 1 to " + std::to_string(MAX_WORKERS));
    }
  } else if (key == "spread") {
    spread_ = parseBool(key, value);
  } else if (key == "debug-wait") {
    debugWait_ = parseBool(key, value);
  } else if (key == "pdb") {
    pdb_ = parseBool(key, value);
  } else if (key == "timeout") {
    timeout_ = parseSeconds(key, value, 0.001);
  } else if (key == "memory") {
    auto bytes = parseSize_ ? parseSize_(value) : std::nullopt;
    if (!bytes) throw ParameterError("memory=" + value + ": expected a size such as 512M or 2G");
    if (*bytes < MINIMUM_MEMORY) {
      throw ParameterError("memory=" + value + ": too small for a Python worker (at least 256M)");
    }
    memoryLimit_ = *bytes;
  } else if (key == "thread-stack") {
    auto bytes = parseSize_ ? parseSize_(value) : std::nullopt;
    if (!bytes) {
      throw ParameterError("thread-stack=" + value + ": expected a size such as 1M or 8M");
    }
    if (*bytes < MINIMUM_THREAD_STACK || *bytes > MAXIMUM_THREAD_STACK) {
      throw ParameterError("thread-stack=" + value + ": expected 128K to 1G");
    }
    threadStack_ = *bytes;
  } else if (key == "sandbox") {
    if (value == "on") {
      sandbox_ = SandboxMode::ON;
    } else if (value == "off") {
      sandbox_ = SandboxMode::OFF;
    } else if (value == "best-effort") {
      sandbox_ = SandboxMode::BEST_EFFORT;
    } else {
      throw ParameterError("sandbox=" + value + ": expected on, off or best-effort");
    }
  } else if (key == "sandbox-allow") {
    sandboxAllow_.push_back(parseSandboxAllow(value));
  } else if (key == "sandbox-net") {
    sandboxNet_ = parseBool(key, value);
  } else if (key == "worker-user") {
    auto user = lookUpUser(value);
    if (value.empty() || !user) throw ParameterError("worker-user=" + value + ": no such user");
    workerIdentity_.uid = user->uid;
    // The user's primary group unless worker-group= says otherwise (in either order).
    if (!explicitGroup_) workerIdentity_.gid = user->gid;
    workerIdentity_.user = value;
  } else if (key == "worker-group") {
    auto gid = lookUpGroup(value);
    if (value.empty() || !gid) throw ParameterError("worker-group=" + value + ": no such group");
    workerIdentity_.gid = *gid;
    explicitGroup_ = true;
  } else if (key == "max-restarts") {
    maxRestarts_ = parseCount(key, value);
  } else if (key == "restart-window") {
    restartWindow_ = std::chrono::duration_cast<std::chrono::seconds>(
        parseSeconds(key, value, 1));
  } else if (key == "script") {
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
  if (sandbox_ == SandboxMode::OFF) {
    if (!sandboxAllow_.empty()) {
      throw ParameterError("sandbox-allow=" + sandboxAllow_.front().path +
                           ": needs sandbox=on (or sandbox=best-effort)");
    }
    if (sandboxNet_) {
      throw ParameterError(std::string("sandbox-net=") + (*sandboxNet_ ? "on" : "off") +
                           ": needs sandbox=on (or sandbox=best-effort)");
    }
  }
  if (pdb_ && sandbox_ != SandboxMode::OFF && !sandboxNet()) {
    // The tool reaches a waiting breakpoint over a Unix socket: a socket of the worker's own.
    throw ParameterError("pdb=on: tools/pyworker-debug pdb connects over a socket, which "
                         "sandbox-net=off refuses");
  }
  const auto& who = workerIdentity_;
  if (geteuid() != 0 && ((who.uid && *who.uid != geteuid()) ||
                         (who.gid && *who.gid != getegid()))) {
    // Only root may start a process as someone else; said now rather than by every worker.
    throw ParameterError(
        (who.uid ? "worker-user=" + who.user : std::string("worker-group=")) +
        ": nbdkit must run as root to start its workers as another user or group");
  }
}

}  // namespace pyworker
