#include "sandbox.h"

#include "seccomp-filter.h"

#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/landlock.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <stdexcept>

#if defined(__SANITIZE_ADDRESS__)  // GCC
#define PYWORKER_ASAN 1
#elif defined(__has_feature)  // clang (the fuzz build)
#if __has_feature(address_sanitizer)
#define PYWORKER_ASAN 1
#endif
#endif

namespace pyworker {

namespace {

// The ABI 3-7 names, for kernel headers older than the running kernel (Debian 12's are 6.1).
constexpr uint64_t FS_TRUNCATE = 1ULL << 14;   // ABI 3
constexpr uint64_t FS_IOCTL_DEV = 1ULL << 15;  // ABI 5
constexpr uint64_t NET_BIND_TCP = 1ULL << 0;   // ABI 4
constexpr uint64_t NET_CONNECT_TCP = 1ULL << 1;
constexpr uint64_t SCOPE_ABSTRACT_UNIX_SOCKET = 1ULL << 0;  // ABI 6
constexpr uint64_t SCOPE_SIGNAL = 1ULL << 1;

struct RulesetAttributes {
  // struct landlock_ruleset_attr as of ABI 6; the kernel takes the size we pass.
  uint64_t handledAccessFs;
  uint64_t handledAccessNet;
  uint64_t scoped;
};

constexpr uint64_t FS_READ = LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR |
                             LANDLOCK_ACCESS_FS_EXECUTE;
// Read-only paths may be read and their programs run (they run in this same sandbox).
constexpr uint64_t FS_FILE_RIGHTS = LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE |
                                    LANDLOCK_ACCESS_FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV;
// The only rights a rule on a file (not a directory) may carry.

[[noreturn]] void fail(const std::string& what) {
  fprintf(stderr, "nbdkit-pyworker-worker: sandbox: %s\n", what.c_str());
  fflush(nullptr);
  _exit(1);
}

uint64_t handledFs(int abi) {
  uint64_t rights = (LANDLOCK_ACCESS_FS_MAKE_SYM << 1) - 1;  // ABI 1: bits 0-12
  if (abi >= 2) rights |= LANDLOCK_ACCESS_FS_REFER;
  if (abi >= 3) rights |= FS_TRUNCATE;
  if (abi >= 5) rights |= FS_IOCTL_DEV;
  return rights;
}

class Ruleset {
public:
  Ruleset(int abi, bool network) : abi_(abi) {
    RulesetAttributes attributes = {handledFs(abi), 0, 0};
    size_t size = sizeof(uint64_t);
    if (abi >= 4) {
      // No rule for either: with the network off, no TCP bind or connect at all (socket()
      // is refused by the seccomp filter as well; this also covers a socket the script got
      // some other way).
      if (!network) attributes.handledAccessNet = NET_BIND_TCP | NET_CONNECT_TCP;
      size = 2 * sizeof(uint64_t);
    }
    if (abi >= 6) {
      // No signals to processes outside the sandbox (nbdkit among them); its own children
      // are inside.
      attributes.scoped = SCOPE_SIGNAL | (network ? 0 : SCOPE_ABSTRACT_UNIX_SOCKET);
      size = sizeof attributes;
    }
    fd_ = static_cast<int>(syscall(SYS_landlock_create_ruleset, &attributes, size, 0));
    if (fd_ < 0) fail(std::string("landlock_create_ruleset: ") + strerror(errno));
  }
  ~Ruleset() { close(fd_); }

  void allow(const std::string& path, uint64_t rights, bool required) {
    int fd = open(path.c_str(), O_PATH | O_CLOEXEC);
    if (fd < 0) {
      if (!required) return;  // a system file this machine lacks
      fail("cannot open " + path + ": " + strerror(errno));
    }
    struct stat st;
    if (fstat(fd, &st) == 0 && !S_ISDIR(st.st_mode)) rights &= FS_FILE_RIGHTS;
    landlock_path_beneath_attr rule = {rights & handledFs(abi_), fd};
    int r = static_cast<int>(
        syscall(SYS_landlock_add_rule, fd_, LANDLOCK_RULE_PATH_BENEATH, &rule, 0));
    int error = errno;
    close(fd);
    if (r != 0) fail("landlock_add_rule(" + path + "): " + strerror(error));
  }

  void enforce() {
    if (syscall(SYS_landlock_restrict_self, fd_, 0) != 0) {
      fail(std::string("landlock_restrict_self: ") + strerror(errno));
    }
  }

private:
  int abi_;
  int fd_ = -1;
};

const char* const SYSTEM_READ[] = {
    // Programs, libraries and data (Python's C extensions load libraries from here), and
    // Debian's merged-/usr links to them.
    "/usr", "/lib", "/lib64", "/bin", "/sbin",
    // What glibc and Python read for names, time, TLS and MIME types: not /etc as a whole
    // (/etc/shadow, keys, ...).
    "/etc/ld.so.cache", "/etc/localtime", "/etc/timezone", "/etc/passwd", "/etc/group",
    "/etc/nsswitch.conf", "/etc/hosts", "/etc/host.conf", "/etc/resolv.conf", "/etc/gai.conf",
    "/etc/services", "/etc/protocols", "/etc/mime.types", "/etc/ssl", "/etc/ca-certificates",
    "/etc/python3",
    // The worker finds what its script started in /proc (descendants.c++); other processes'
    // memory and environment stay out of reach (Landlock refuses ptrace access outside the
    // sandbox, which /proc/PID/mem and environ need).
    "/proc", "/sys/devices/system/cpu",
    "/dev/zero", "/dev/urandom", "/dev/random",
};

std::vector<std::string> pythonPaths() {
  // sys.path (the standard library, lib-dynload, site- and dist-packages, PYTHONPATH) and the
  // prefixes: later imports must find what the script asks for. Relative entries (the current
  // directory) are not followed.
  std::vector<std::string> paths;
  PyGILState_STATE gil = PyGILState_Ensure();
  auto add = [&](PyObject* item) {
    if (item == nullptr || !PyUnicode_Check(item)) return;
    PyObject* bytes = PyUnicode_EncodeFSDefault(item);
    if (bytes == nullptr) {
      PyErr_Clear();
      return;
    }
    std::string path = PyBytes_AsString(bytes);
    Py_DECREF(bytes);
    if (path.empty() || path[0] != '/' || path == "/") return;
    paths.push_back(path);
  };
  if (PyObject* list = PySys_GetObject("path"); list && PyList_Check(list)) {
    for (Py_ssize_t i = 0; i < PyList_Size(list); ++i) add(PyList_GetItem(list, i));
  }
  for (const char* name : {"prefix", "exec_prefix", "base_prefix", "base_exec_prefix"}) {
    add(PySys_GetObject(name));
  }
  PyGILState_Release(gil);
  return paths;
}

std::string asanLogDirectory() {
  // Built with AddressSanitizer (tools/test --sanitize): its reports go to log_path's
  // directory, opened when a report is written, so after the sandbox is in place.
#if defined(PYWORKER_ASAN)
  const char* options = getenv("ASAN_OPTIONS");
  if (options == nullptr) return "";
  std::string text = options;
  auto at = text.find("log_path=");
  if (at == std::string::npos) return "";
  auto end = text.find(':', at);
  std::string path = text.substr(at + 9, end == std::string::npos ? end : end - at - 9);
  auto slash = path.rfind('/');
  return slash == std::string::npos || slash == 0 ? "" : path.substr(0, slash);
#else
  return "";
#endif
}

int threadCount() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("Threads:", 0) == 0) return std::atoi(line.c_str() + 8);
  }
  return -1;
}

}  // namespace

bool parseSandboxArgument(std::string_view argument, SandboxRequest& request, bool& valid) {
  auto value = [&](std::string_view prefix) -> std::optional<std::string> {
    if (argument.rfind(prefix, 0) != 0) return std::nullopt;
    return std::string(argument.substr(prefix.size()));
  };
  auto number = [&](const std::string& text) -> std::optional<unsigned long> {
    if (text.empty() || text.size() > 10 ||
        text.find_first_not_of("0123456789") != std::string::npos) {
      return std::nullopt;
    }
    return std::stoul(text);
  };
  if (argument == "--sandbox-seccomp") {
    request.seccomp = request.enabled = true;
  } else if (argument == "--sandbox-pdb") {
    request.pdb = true;
  } else if (argument == "--sandbox-no-network") {
    request.network = false;
  } else if (auto v = value("--sandbox-landlock=")) {
    auto abi = number(*v);
    if (!abi || *abi > 1000) valid = false; else request.landlockAbi = static_cast<int>(*abi);
    request.enabled = true;
  } else if (auto v = value("--sandbox-read=")) {
    if (v->empty() || (*v)[0] != '/') valid = false; else request.readPaths.push_back(*v);
  } else if (auto v = value("--sandbox-write=")) {
    if (v->empty() || (*v)[0] != '/') valid = false; else request.writePaths.push_back(*v);
  } else if (auto v = value("--user=")) {
    auto id = number(*v);  // (uid_t)-1 means "unchanged" to setresuid(), more would wrap
    if (!id || *id >= 0xFFFFFFFFul) valid = false; else request.uid = static_cast<uid_t>(*id);
  } else if (auto v = value("--group=")) {
    auto id = number(*v);
    if (!id || *id >= 0xFFFFFFFFul) valid = false; else request.gid = static_cast<gid_t>(*id);
  } else {
    return false;
  }
  return true;
}

void becomeWorkerUser(const SandboxRequest& request) {
  auto refuse = [&](const char* call) {
    // What fails here is nearly always nbdkit -u/-g: nbdkit gave up root after its first
    // workers, and a replacement started by it cannot switch to another user.
    int error = errno;
    fprintf(stderr,
            "nbdkit-pyworker-worker: worker-user: cannot run as uid %ld gid %ld: %s: %s (this "
            "process runs as uid %ld: only root can start workers as another user; with "
            "nbdkit -u/-g that is nbdkit's user)\n",
            request.uid ? static_cast<long>(*request.uid) : static_cast<long>(getuid()),
            request.gid ? static_cast<long>(*request.gid) : static_cast<long>(getgid()), call,
            strerror(error), static_cast<long>(geteuid()));
    fflush(nullptr);
    _exit(1);
  };
  if (request.gid) {
    gid_t gid = *request.gid;
    if (geteuid() == 0 || getegid() != gid || getgid() != gid) {  // root: its own groups go
      if (setgroups(1, &gid) != 0) refuse("setgroups");
      if (setresgid(gid, gid, gid) != 0) refuse("setresgid");
    }
  }
  if (request.uid && (geteuid() != *request.uid || getuid() != *request.uid)) {
    if (setresuid(*request.uid, *request.uid, *request.uid) != 0) refuse("setresuid");
  }
}

void applySandbox(const SandboxRequest& request) {
  if (!request.any()) return;
  int threads = threadCount();
  if (request.landlockAbi > 0 && threads != 1) {
    fail("the worker has " + std::to_string(threads) +
         " threads before its sandbox (Landlock would restrict only one)");
  }
  if (request.landlockAbi > 0) {
    Ruleset rules(request.landlockAbi, request.network);
    for (const char* path : SYSTEM_READ) rules.allow(path, FS_READ, false);
    rules.allow("/dev/null", FS_READ | LANDLOCK_ACCESS_FS_WRITE_FILE | FS_IOCTL_DEV, false);
    rules.allow("/etc/python3." + std::to_string(PY_MINOR_VERSION), FS_READ, false);
    for (const auto& path : pythonPaths()) rules.allow(path, FS_READ, false);
    for (const auto& path : request.readPaths) rules.allow(path, FS_READ | FS_IOCTL_DEV, true);
    for (const auto& path : request.writePaths) {
      rules.allow(path, handledFs(request.landlockAbi), true);
    }
    auto asan = asanLogDirectory();
    if (!asan.empty()) rules.allow(asan, handledFs(request.landlockAbi), false);
    // landlock_restrict_self needs no_new_privs (or CAP_SYS_ADMIN): set it either way, so
    // that no program the script runs gains privileges (setuid binaries) whatever the layers.
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
      fail(std::string("prctl(PR_SET_NO_NEW_PRIVS): ") + strerror(errno));
    }
    rules.enforce();
  }
  if (request.seccomp) {
    try {
      installSeccompFilter(buildSeccompFilter({request.network}));
    } catch (const std::exception& e) {
      fail(e.what());
    }
  } else if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    fail(std::string("prctl(PR_SET_NO_NEW_PRIVS): ") + strerror(errno));
  }
}

}  // namespace pyworker
