// nbdkit-pyworker-worker: serves `Worker` over the fds the pyworker plugin gives it, runs the
// script in an embedded CPython, and ends when the serving connection ends.

#include "descendants.h"
#include "handle-callbacks.h"
#include "host-link.h"
#include "lane-server.h"
#include "open-handle.h"
#include "orphan-watch.h"
#include "native-thread.h"
#include "nbdkit-module.h"
#include "pdb-rendezvous.h"
#include "process-title.h"
#include "python-executor.h"
#include "python-ref.h"
#include "rpc-limits.h"
#include "sandbox.h"
#include "script.h"
#include "worker-server.h"

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <kj/debug.h>
#include <kj/function.h>

#include <malloc.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>

namespace pyworker {
namespace {

constexpr auto ORPHAN_GRACE = std::chrono::milliseconds(1000);
// How long the main thread has to notice by itself that the plugin is gone (orphan-watch.h).

constexpr const char USAGE[] =
    "nbdkit-pyworker-worker: this program is started by nbdkit's pyworker plugin "
    "(nbdkit pyworker script=...)\n";

struct Arguments {
  int serveFd = -1;
  std::optional<int> configFd;
  std::optional<int> dataFd;  // the memfd of request payloads shared with the plugin
  std::optional<int> laneFd;  // where the plugin offers lanes (the data path)
  size_t dataSize = 0;
  std::string label;  // the script's base name, given by the plugin for ps
  SandboxRequest sandbox;  // worker-user=, sandbox= (sandbox.h)
};

std::optional<int> parseFd(std::string_view text) {
  int fd = 0;
  if (text.empty() || text.size() > 9) return std::nullopt;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    fd = fd * 10 + (c - '0');
  }
  return fd;
}

bool isSocket(int fd) {
  struct stat st;
  return fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
}

std::optional<Arguments> parseArguments(int argc, char** argv) {
  // nbdkit-pyworker-worker --serve-fd=N [--config-fd=M] [--data-fd=D --data-size=BYTES]
  //                        [--lane-fd=L] [--] LABEL
  Arguments arguments;
  bool serveGiven = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--") {  // the rest is the label, for ps only
      if (i + 1 < argc) arguments.label = argv[i + 1];
      break;
    }
    if (arg.rfind("--serve-fd=", 0) == 0) {
      auto fd = parseFd(arg.substr(strlen("--serve-fd=")));
      if (!fd) return std::nullopt;
      arguments.serveFd = *fd;
      serveGiven = true;
    } else if (arg.rfind("--config-fd=", 0) == 0) {
      auto fd = parseFd(arg.substr(strlen("--config-fd=")));
      if (!fd) return std::nullopt;
      arguments.configFd = *fd;
    } else if (arg.rfind("--data-fd=", 0) == 0) {
      auto fd = parseFd(arg.substr(strlen("--data-fd=")));
      if (!fd) return std::nullopt;
      arguments.dataFd = *fd;
    } else if (arg.rfind("--lane-fd=", 0) == 0) {
      auto fd = parseFd(arg.substr(strlen("--lane-fd=")));
      if (!fd) return std::nullopt;
      arguments.laneFd = *fd;
    } else if (arg.rfind("--data-size=", 0) == 0) {
      auto text = arg.substr(strlen("--data-size="));
      char* end = nullptr;
      std::string copy(text);
      unsigned long long size = strtoull(copy.c_str(), &end, 10);
      if (copy.empty() || *end != '\0') return std::nullopt;
      arguments.dataSize = size;
    } else if (bool valid = true; parseSandboxArgument(arg, arguments.sandbox, valid)) {
      if (!valid) return std::nullopt;
    } else if (arg.rfind("--", 0) == 0) {
      return std::nullopt;
    }
  }
  if (arguments.dataFd && (*arguments.dataFd < 3 || arguments.dataSize == 0)) return std::nullopt;
  if (!serveGiven || arguments.serveFd < 3 || !isSocket(arguments.serveFd)) return std::nullopt;
  if (arguments.laneFd && (*arguments.laneFd < 3 || !isSocket(*arguments.laneFd))) {
    return std::nullopt;
  }
  if (arguments.configFd &&
      (*arguments.configFd < 3 || *arguments.configFd == arguments.serveFd ||
       !isSocket(*arguments.configFd))) {
    return std::nullopt;
  }
  return arguments;
}

void showIdentity(int argc, char** argv, const Arguments& arguments) {
  // "nbdkit-pyworker-worker ramdisk.py (nbdkit 1234)": the script and the nbdkit that started
  // this worker (our parent now). A daemonized nbdkit serves from a child of that process:
  // after_fork renames us with that one's pid.
  claimProcessTitle(argc, argv);
  setWorkerTitle(arguments.label.empty() ? "?" : arguments.label, getppid());
}

class RpcConnection {
  // One socketpair end serving the bootstrap `Worker`.
public:
  RpcConnection(kj::LowLevelAsyncIoProvider& provider, int fd, rpc::Worker::Client bootstrap)
      : stream(provider.wrapSocketFd(fd, kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP)),
        network(*stream, capnp::rpc::twoparty::Side::SERVER, rpcReaderOptions()),
        rpcSystem(capnp::makeRpcServer(network, kj::mv(bootstrap))) {}

  kj::Promise<void> onDisconnect() { return network.onDisconnect(); }

private:
  kj::Own<kj::AsyncIoStream> stream;
  capnp::TwoPartyVatNetwork network;
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpcSystem;
};

void forgetForeignMainThread() {
  // WARNING: Python 3.11's threading internals. The threading module takes the thread that
  // first imports it for the main thread; in a connection callback that is a pool or lane
  // thread, which never ends, and Py_FinalizeEx() would wait for it for ever (then the
  // watchdog below ends the process, without atexit handlers). Such a thread is no more the
  // script's than a C library's thread: drop it from the threads that finalizing waits for,
  // as threading._shutdown() itself ignores a main thread that is not this one.
  if (PyRun_SimpleString(
          "import sys\n"
          "_t = sys.modules.get('threading')\n"
          "if _t is not None and _t._main_thread.ident != _t.get_ident():\n"
          "    with _t._shutdown_locks_lock:\n"
          "        _t._shutdown_locks.discard(_t._main_thread._tstate_lock)\n"
          "del _t\n") != 0) {
    fputs("nbdkit-pyworker-worker: could not prepare the threading module for exit\n", stderr);
  }
}

[[noreturn]] void finish(PythonExecutor& executor, const LaneServer* lanes,
                         PyThreadState* mainThread, kj::FunctionParam<void()> closeLeftOver) {
  // pdb=on: the waiting breakpoints' directory goes with the worker, however it ends here.
  removePdbRendezvous();
  bool idle = executor.waitUntilIdle(std::chrono::milliseconds(500)) &&
              (!lanes || lanes->waitUntilIdle(std::chrono::milliseconds(500))) &&
              executor.stop(std::chrono::milliseconds(500));
  if (!idle) {
    // A callback is still running (maybe hung, maybe holding the GIL): finalizing would wait
    // for it. The plugin is gone, so nobody wants its answer.
    endDescendants();
    fflush(nullptr);
    _exit(0);
  }
  // Run atexit handlers as in-process nbdkit does at unload, but never hang on a script's
  // own threads: a watchdog ends the process if finalizing takes too long.
  startThread(SMALL_STACK_SIZE, []() {
    std::this_thread::sleep_for(std::chrono::seconds(5));
    endDescendants();
    fflush(nullptr);
    _exit(0);
  });
  // The handles the plugin left open get their close() first, as nbdkit closes every
  // connection before unload (no call runs on them now: the lanes are idle).
  closeLeftOver();
  PyEval_RestoreThread(mainThread);
  forgetForeignMainThread();
  Py_FinalizeEx();
  // After the script's atexit handlers, which may end their helpers gently: what is left of
  // what the script started ends with the worker (descendants.h).
  endDescendants();
  exit(0);
}

int run(const Arguments& arguments) {
  int highest = std::max({arguments.serveFd, arguments.configFd.value_or(-1),
                          arguments.dataFd.value_or(-1), arguments.laneFd.value_or(-1)});
  // Nothing of nbdkit's (client sockets, the other end of our socketpairs) may stay open here.
  KJ_SYSCALL(close_range(highest + 1, ~0U, 0));
  signal(SIGPIPE, SIG_IGN);
  if (getenv("MALLOC_ARENA_MAX") == nullptr) {
    // glibc gives each new thread a malloc arena of its own, up to 8 per core, each reserving
    // 64 MiB of address space: under memory= (RLIMIT_AS) a handful of lane threads took more
    // than the script. The worker's threads run Python one at a time (the GIL), so they lose
    // little by sharing one arena.
    mallopt(M_ARENA_MAX, 1);
  }
  if (!becomeSubreaper()) {
    // Linux >= 3.4 has it: then a setsid() daemon of the script outlives a killed worker.
    perror("nbdkit-pyworker-worker: prctl(PR_SET_CHILD_SUBREAPER)");
  }
  // worker-user=: before the interpreter reads anything, so that every file is opened as
  // that user.
  becomeWorkerUser(arguments.sandbox);

  registerNbdkitModule();
  Py_InitializeEx(0);  // no Python signal handlers: Ctrl-C must not become KeyboardInterrupt
  {
    PyRef argv(Py_BuildValue("[s]", ""));
    PySys_SetObject("argv", argv.get());  // as nbdkit's python plugin: sys.argv == ['']
  }
  // stdout is a pipe to the plugin: line-buffer it so a script's print() shows when it
  // happens, as on nbdkit's terminal. faulthandler prints the Python stack of every thread
  // when the worker dies of SIGSEGV/SIGABRT/SIGBUS/SIGFPE/SIGILL: the plugin's log then says
  // where the script was.
  // SIGUSR2 makes faulthandler print every thread's Python stack (to the plugin, so to
  // nbdkit's log) without stopping the worker: `kill -USR2 PID` is a debugger-free look at
  // where the script is (not SIGUSR1: kj reserves it). A script that sets its own handler
  // for it (in config, on the main thread) replaces this one, as it would nbdkit's own.
  // Only what is needed is imported (the signal module alone costs ~2 ms of start-up).
  std::string setup = "import sys, faulthandler\n"
                      "sys.stdout.reconfigure(line_buffering=True)\n"
                      "faulthandler.enable()\n"
                      "faulthandler.register(" + std::to_string(SIGUSR2) + ", all_threads=True)\n";
  if (PyRun_SimpleString(setup.c_str()) != 0) {
    fputs("nbdkit-pyworker-worker: could not set up stdout and faulthandler\n", stderr);
  }
  // sandbox=: with the interpreter up (its import path known) and before the first thread
  // (Landlock restricts the calling thread and what it starts later) and the script's first
  // line (the plugin's load request comes later).
  SandboxRequest sandbox = arguments.sandbox;
  if (sandbox.any() && sandbox.pdb) {
    // pdb=on: Landlock admits no new directory in $TMPDIR once it applies; breakpoints wait in
    // this one (removed at exit as any).
    try {
      sandbox.writePaths.push_back(pdbRendezvous());
    } catch (const std::runtime_error& e) {
      fprintf(stderr, "nbdkit-pyworker-worker: pdb=on: %s\n", e.what());
    }
  }
  applySandbox(sandbox);
  startOrphanWatch(arguments.serveFd, ORPHAN_GRACE);
  // From now on Python runs on this thread only inside the config-phase calls (worker-server:
  // onMainThread), otherwise on pool and lane threads.
  PyThreadState* mainThread = PyEval_SaveThread();

  auto io = kj::setupAsyncIo();
  HostLink host(kj::getCurrentThreadExecutor());
  setNbdkitModuleHost(&host);
  PythonExecutor executor;
  Script script(host);
  SharedData data;
  if (arguments.dataFd) {
    // Mapped once; the fd itself is not needed afterwards (a worker keeps no fd it does not
    // use).
    void* base = mmap(nullptr, arguments.dataSize, PROT_READ | PROT_WRITE, MAP_SHARED,
                      *arguments.dataFd, 0);
    if (base == MAP_FAILED) KJ_FAIL_SYSCALL("mmap(--data-fd)", errno, arguments.dataSize);
    close(*arguments.dataFd);
    data = {static_cast<uint8_t*>(base), arguments.dataSize};
  }
  HandleTable handles;
  std::optional<LaneServer> lanes;
  if (arguments.laneFd) {
    lanes.emplace(kj::AutoCloseFd(*arguments.laneFd), script, host, handles, data);
  }
  rpc::Worker::Client worker =
      kj::heap<WorkerServer>(Services{script, executor, host, handles});

  RpcConnection serving(*io.lowLevelProvider, arguments.serveFd, worker);
  std::optional<RpcConnection> config;
  kj::Promise<void> configDone = kj::READY_NOW;
  if (arguments.configFd) {
    config.emplace(*io.lowLevelProvider, *arguments.configFd, worker);
    // Normal after get_ready: the plugin closes it. Its capabilities are released by capnp.
    // Once it has ended, its socket is closed here too: a worker keeps no fd it does not use.
    configDone = config->onDisconnect()
                     .then([&config]() { return kj::evalLater([&config]() { config.reset(); }); })
                     .eagerlyEvaluate(nullptr);
  }

  serving.onDisconnect().wait(io.waitScope);
  orderlyExitBegun();
  host.disconnect();
  // The plugin is gone (it retired this worker, or nbdkit ended), maybe with handles open.
  finish(executor, lanes ? &*lanes : nullptr, mainThread, [&]() {
    HandleCallbacks(script, host).closeLeftOver(handles, std::chrono::milliseconds(0));
  });
}

}  // namespace
}  // namespace pyworker

int main(int argc, char** argv) {
  auto arguments = pyworker::parseArguments(argc, argv);
  if (!arguments) {
    fputs(pyworker::USAGE, stderr);
    return 1;
  }
  pyworker::showIdentity(argc, argv, *arguments);
  return pyworker::run(*arguments);
}
