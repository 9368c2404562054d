// The nbdkit callback table. Each callback is thin: capture what only nbdkit's thread knows,
// forward one call to the worker (process-wide callbacks and opening a connection as an RPC
// to a worker the supervisor picks, a connection's callbacks on a lane through its
// Connection), check the reply, apply it to nbdkit.

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <memory>
#include <optional>
#include <string>
#include <type_traits>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "bring-up.h"
#include "connection.h"
#include "guard.h"
#include "handle-opening.h"
#include "plugin-state.h"
#include "reply-checks.h"
#include "reply-decoding.h"
#include "reopen.h"
#include "spread.h"
#include "script-outcome.h"
#include "thread-stacks.h"

#if !defined(PYWORKER_PYTHON_VERSION) || !defined(PYWORKER_PYTHON_ABI_VERSION)
#error "the build must define PYWORKER_PYTHON_VERSION and PYWORKER_PYTHON_ABI_VERSION"
#endif

// Set by nbdkit's -D pyworker.trace=1 (nbdkit looks the symbol up by name).
NBDKIT_DLL_PUBLIC int pyworker_debug_trace = 0;

namespace pyworker {
namespace {

WorkerLink& link() { return state().supervisor().link(); }

using Purpose = Supervisor::Purpose;

bool hasPeer() {
  // Under -s nbdkit serves its one connection on its main thread (any other connection has
  // a thread of its own), over what were its stdin and stdout; when those are pipes (as
  // over ssh) there is no peer, and nbdkit_peer_name() would log "peername: Socket
  // operation on non-socket".
  return !(gettid() == getpid() && !state().stdinIsSocket());
}
using Instance = std::shared_ptr<WorkerInstance>;

Connection& connectionOf(void* handle) { return *static_cast<Connection*>(handle); }

// Runs call(instance) for a new connection's callbacks (preconnect, list_exports,
// default_export, open: nbdkit makes them only after after_fork) on the worker the supervisor
// picks. A worker that died a moment ago may not have been noticed yet; a new connection is
// owed a live worker, so a call that finds its worker gone is made once more, on another.
template <typename Call>
void withLiveWorker(Supervisor::Purpose purpose, Call&& call) {
  for (int attempt = 1;; ++attempt) {
    auto instance = state().supervisor().instance(purpose);
    try {
      call(instance);
      return;
    } catch (const WorkerLost&) {
      if (attempt > 1) throw;
    }
  }
}

template <typename Checks>
void verify(WorkerInstance* from, Checks&& checks) {
  // Runs a reply's checks (reply-checks.h) on nbdkit's thread, after the reply was copied out.
  // A reply that no correct worker sends retires the worker that sent it (`from`; none before
  // the fork, when a failure makes nbdkit exit anyway): it is killed, so every later call on
  // it fails, and the next connection gets a new one. Either way the request fails (guarded()
  // logs the BadReply and sets EIO).
  try {
    checks();
  } catch (const BadReply& e) {
    if (e.blame == BadReply::WORKER && from) from->reject();
    throw;
  }
}

// Runs one call on a lane to the connection's worker (Connection::laneCall): `fill` sets what
// is particular to the call (which callback, its arguments), `read` copies the reply's
// particulars out, on success only. Returns the outcome and the worker that answered.
struct LaneOutcome {
  ScriptOutcome outcome;
  std::shared_ptr<WorkerInstance> from;
};

using Target = Connection::Target;

template <typename Fill, typename Read>
LaneOutcome laneCall(void* handle, Target target, Fill&& fill, Read&& read) {
  LaneOutcome result;
  result.from = connectionOf(handle).laneCall(
      target,
      [&](rpc::LaneCall::Builder call, const std::shared_ptr<WorkerInstance>& instance) {
        if constexpr (std::is_invocable_v<Fill, rpc::LaneCall::Builder, const Instance&>) {
          fill(call, instance);
        } else {
          fill(call);
        }
      },
      [&](rpc::LaneReply::Reader reply) {
        auto outcome = ScriptOutcome::from(reply.getStatus());
        if (result.outcome.error != 0) return;  // Target::EVERY: the first failure stands
        result.outcome = kj::mv(outcome);
        if (result.outcome.error == 0) read(reply);
      });
  return result;
}

int query(void* handle, const char* callback, rpc::Query which, int maximum) {
  return guarded(callback, -1, [&] {
    int32_t value = 0;
    auto from = connectionOf(handle).first();
    int32_t fixed = from->scriptFacts().fixedAnswers[static_cast<size_t>(which)];
    if (fixed >= 0) {
      value = fixed;  // the script has no such callback: no round trip
    } else {
      auto answered = laneCall(
          handle, Target::FIRST, [&](rpc::LaneCall::Builder call) { call.setQuery(which); },
          [&](rpc::LaneReply::Reader reply) { value = reply.getValue(); });
      if (!answered.outcome.report()) return -1;
      from = answered.from;
    }
    verify(from.get(), [&] { checkQueryAnswer(callback, value, maximum); });
    connectionOf(handle).remember(which, value);
    return static_cast<int>(value);
  });
}

// --- process-wide callbacks ---

void pyworkerUnload() { destroyState(); }

int pyworkerConfig(const char* key, const char* value) {
  return guarded("config", -1, [&] {
    std::string v = value;
    if (strcmp(key, "script") == 0) {
      // Resolved now: the daemon changes to "/" before the worker could reload it.
      char* absolute = nbdkit_absolute_path(value);
      if (absolute == nullptr) return -1;
      v = absolute;
      free(absolute);
    }
    state().parameters().accept(key, v);
    return 0;
  });
}

int pyworkerConfigComplete() {
  return guarded("config_complete", -1, [&] {
    state().supervisor().forEachWorker([](WorkerLink& link) { configComplete(link); });
    // Before nbdkit starts any thread (its first is for the first connection, after the fork).
    auto stacks = setDefaultThreadStack(state().parameters().threadStack());
    nbdkit_debug("pyworker: nbdkit's threads get %zu KiB stacks (were %zu KiB): none of them "
                 "runs Python", stacks.after / 1024, stacks.before / 1024);
    return 0;
  });
}

int pyworkerThreadModel() {
  return guarded("thread_model", -1, [&] {
    // `nbdkit --dump-plugin pyworker` with no script asks too: answer the script default.
    if (state().parameters().script().empty()) {
      return static_cast<int>(NBDKIT_THREAD_MODEL_SERIALIZE_ALL_REQUESTS);
    }
    std::optional<int32_t> agreed;
    state().supervisor().forEachWorker([&](WorkerLink& link) {
      int32_t model = threadModel(link);
      if (agreed && *agreed != model) {
        throw BadReply(BadReply::SCRIPT, "the workers' thread_model answers differ (" +
                                             std::to_string(*agreed) + " and " +
                                             std::to_string(model) + ")");
      }
      agreed = model;
    });
    state().supervisor().setThreadModel(*agreed);
    return static_cast<int>(*agreed);
  });
}

int pyworkerGetReady() {
  return guarded("get_ready", -1, [&] {
    state().supervisor().forEachWorker([](WorkerLink& link) { getReady(link); });
    state().supervisor().endConfigPhase();
    return 0;
  });
}

int pyworkerAfterFork() {
  return guarded("after_fork", -1, [&] {
    state().supervisor().startServing();
    return 0;
  });
}

void pyworkerCleanup() {
  guarded("cleanup", 0, [&] {
    // A worker that died (or was killed to let nbdkit exit) has nothing left to clean up;
    // starting a new one just to run cleanup() would be worse than not running it.
    state().supervisor().cleanUp();
    return 0;
  });
}

void pyworkerDumpPlugin() {
  guarded("dump_plugin", 0, [&] {
    auto& s = state();
    if (s.parameters().script().empty()) {
      // No script, no worker: what the worker was built against is known at build time.
      printf("python_version=%s\n", PYWORKER_PYTHON_VERSION);
      printf("python_pep_384_abi_version=%d\n", PYWORKER_PYTHON_ABI_VERSION);
      printf("nbdkit_python_maximum_api_version=2\n");
      fflush(stdout);
      return 0;
    }
    s.supervisor();
    printf("python_version=%s\n", s.scriptInfo().pythonVersion.c_str());
    printf("python_pep_384_abi_version=%d\n", s.scriptInfo().pep384AbiVersion);
    printf("nbdkit_python_maximum_api_version=2\n");
    ScriptOutcome outcome;
    std::string text;
    link().run([&](rpc::Worker::Client& worker) {
      return worker.dumpPluginRequest().send().then([&](auto response) {
        outcome = ScriptOutcome::from(response.getStatus());
        auto t = response.getText();
        text.assign(t.begin(), t.size());
      });
    });
    bool succeeded = outcome.report();
    if (succeeded) fwrite(text.data(), 1, text.size(), stdout);
    fflush(stdout);
    // nbdkit ignores dump_plugin's outcome; a script whose dump_plugin() raised must not look
    // like a success to whoever runs --dump-plugin (in-process it crashes nbdkit).
    if (!succeeded) exit(EXIT_FAILURE);
    return 0;
  });
}

// --- connection callbacks ---

int pyworkerPreconnect(int readonly) {
  return guarded("preconnect", -1, [&] {
    bool succeeded = false;
    withLiveWorker(Purpose::BEFORE_OPEN, [&](const std::shared_ptr<WorkerInstance>& instance) {
      if (!instance->scriptFacts().preconnect) {
        succeeded = true;  // nbdkit python's answer without one
        return;
      }
      // No export name yet, and nbdkit_is_tls() is not available this early. Captured only
      // for a script that asks (eight system calls).
      auto context = ConnectionContext::capture(false, false, hasPeer());
      succeeded = runStatusCall(*instance, [&](rpc::Worker::Client& w) {
        auto request = w.preconnectRequest();
        request.setReadonly(readonly);
        context.fill(request.initContext());
        return request;
      });
    });
    return succeeded ? 0 : -1;
  });
}

int pyworkerListExports(int readonly, int isTls, struct nbdkit_exports* exports) {
  return guarded("list_exports", -1, [&] {
    ScriptOutcome outcome;
    ExportList list;
    std::shared_ptr<WorkerInstance> from;
    withLiveWorker(Purpose::BEFORE_OPEN, [&](const std::shared_ptr<WorkerInstance>& instance) {
      from = instance;
      if (!instance->scriptFacts().listExports) {
        list.useDefault = true;  // as nbdkit python without one
        return;
      }
      auto context = ConnectionContext::capture(false, false, hasPeer());
      context.isTls = isTls;
      instance->run([&](rpc::Worker::Client& worker) {
        auto request = worker.listExportsRequest();
        request.setReadonly(readonly);
        context.fill(request.initContext());
        return request.send().then([&](auto response) {
          outcome = ScriptOutcome::from(response.getStatus());
          list = decodeExportList(response);
        });
      });
    });
    if (!outcome.report()) return -1;
    if (list.useDefault) return nbdkit_use_default_export(exports);
    verify(from.get(), [&] { checkExportList(list); });
    for (auto& [name, description] : list.exports) {
      if (nbdkit_add_export(exports, name.c_str(),
                            description ? description->c_str() : nullptr) < 0) {
        return -1;
      }
    }
    return 0;
  });
}

const char* pyworkerDefaultExport(int readonly, int isTls) {
  return guarded("default_export", static_cast<const char*>(nullptr), [&]() -> const char* {
    ScriptOutcome outcome;
    std::string name;
    std::shared_ptr<WorkerInstance> from;
    withLiveWorker(Purpose::BEFORE_OPEN, [&](const std::shared_ptr<WorkerInstance>& instance) {
      from = instance;
      if (!instance->scriptFacts().defaultExport) return;  // "", as nbdkit python
      auto context = ConnectionContext::capture(false, false, hasPeer());
      context.isTls = isTls;
      instance->run([&](rpc::Worker::Client& worker) {
        auto request = worker.defaultExportRequest();
        request.setReadonly(readonly);
        context.fill(request.initContext());
        return request.send().then([&](auto response) {
          outcome = ScriptOutcome::from(response.getStatus());
          name = decodeDefaultExport(response);
        });
      });
    });
    if (!outcome.report()) return nullptr;
    verify(from.get(), [&] { checkText(name, "default export name"); });
    return nbdkit_strdup_intern(name.c_str());
  });
}

void* pyworkerOpen(int readonly) {
  return guarded("open", static_cast<void*>(nullptr), [&]() -> void* {
    auto context = ConnectionContext::capture(true, true, hasPeer());
    OpenedHandle opened;
    withLiveWorker(Purpose::OPEN, [&](const std::shared_ptr<WorkerInstance>& instance) {
      opened = openHandle(instance, readonly, context);
    });
    if (!opened.outcome.report()) return nullptr;
    Connection::Reopen reopen;
    if (state().supervisor().recoverByReopening()) reopen = reopenConnection;
    Connection::Spread spread;
    if (state().supervisor().maySpread()) spread = spreadConnection;
    return new Connection(readonly, kj::mv(context), kj::mv(opened.binding), kj::mv(reopen),
                          kj::mv(spread));
  });
}

void pyworkerClose(void* handle) {
  std::unique_ptr<Connection> connection(&connectionOf(handle));
  guarded("close", 0, [&] {
    connection->close().report();
    return 0;
  });
}

const char* pyworkerExportDescription(void* handle) {
  return guarded("export_description", static_cast<const char*>(nullptr),
                 [&]() -> const char* {
                   if (!connectionOf(handle).first()->scriptFacts().exportDescription) {
                     return nullptr;  // the script has none: no round trip
                   }
                   std::optional<std::string> description;
                   auto [outcome, from] = laneCall(
                       handle, Target::FIRST,
                       [](rpc::LaneCall::Builder call) { call.setExportDescription(); },
                       [&](rpc::LaneReply::Reader reply) {
                         description = decodeExportDescription(reply);
                       });
                   if (!outcome.report() || !description) return nullptr;
                   verify(from.get(), [&] { checkText(*description, "export description"); });
                   return nbdkit_strdup_intern(description->c_str());
                 });
}

int64_t pyworkerGetSize(void* handle) {
  return guarded("get_size", int64_t{-1}, [&]() -> int64_t {
    int64_t size = 0;
    auto [outcome, from] = laneCall(
        handle, Target::FIRST, [](rpc::LaneCall::Builder call) { call.setGetSize(); },
        [&](rpc::LaneReply::Reader reply) { size = reply.getSize(); });
    if (!outcome.report()) return -1;
    verify(from.get(), [&] { checkSize(size); });
    connectionOf(handle).rememberSize(size);
    return size;
  });
}

int pyworkerBlockSize(void* handle, uint32_t* minimum, uint32_t* preferred, uint32_t* maximum) {
  return guarded("block_size", -1, [&] {
    if (!connectionOf(handle).first()->scriptFacts().blockSize) {
      *minimum = *preferred = *maximum = 0;  // the script has none: no round trip
      connectionOf(handle).rememberBlockSize(0, 0, 0);
      return 0;
    }
    auto [outcome, from] = laneCall(
        handle, Target::FIRST, [](rpc::LaneCall::Builder call) { call.setBlockSize(); },
        [&](rpc::LaneReply::Reader reply) {
          *minimum = reply.getMinimum();
          *preferred = reply.getPreferred();
          *maximum = reply.getMaximum();
        });
    if (!outcome.report()) return -1;
    connectionOf(handle).rememberBlockSize(*minimum, *preferred, *maximum);
    // nbdkit validates the values themselves (powers of two, ordering) and names the problem.
    return 0;
  });
}

int pyworkerCanWrite(void* h) { return query(h, "can_write", rpc::Query::CAN_WRITE, 1); }
int pyworkerCanFlush(void* h) { return query(h, "can_flush", rpc::Query::CAN_FLUSH, 1); }
int pyworkerIsRotational(void* h) {
  return query(h, "is_rotational", rpc::Query::IS_ROTATIONAL, 1);
}
int pyworkerCanTrim(void* h) { return query(h, "can_trim", rpc::Query::CAN_TRIM, 1); }
int pyworkerCanZero(void* h) { return query(h, "can_zero", rpc::Query::CAN_ZERO, 1); }
int pyworkerCanFastZero(void* h) {
  return query(h, "can_fast_zero", rpc::Query::CAN_FAST_ZERO, 1);
}
int pyworkerCanExtents(void* h) { return query(h, "can_extents", rpc::Query::CAN_EXTENTS, 1); }
int pyworkerCanMultiConn(void* h) {
  return query(h, "can_multi_conn", rpc::Query::CAN_MULTI_CONN, 1);
}
int pyworkerCanFua(void* h) {
  return query(h, "can_fua", rpc::Query::CAN_FUA, NBDKIT_FUA_NATIVE);
}
int pyworkerCanCache(void* h) {
  return query(h, "can_cache", rpc::Query::CAN_CACHE, NBDKIT_CACHE_NATIVE);
}

// --- data callbacks ---

class SharedPayload {
  // A payload's range of the shared data memory of the worker a call goes to, for payloads
  // from SHARED_PAYLOAD_MINIMUM up. The worker is kept alive as long as the range: a
  // re-opened connection may drop it while a request still holds its range.
public:
  void lend(const Instance& instance, uint32_t count) {
    lease_ = {};  // into the arena it came from, while that still exists
    owner_ = instance;
    if (count >= SHARED_PAYLOAD_MINIMUM) lease_ = instance->process().sharedData().lease(count);
  }
  explicit operator bool() const { return static_cast<bool>(lease_); }
  kj::byte* data() const { return lease_.data(); }
  void describe(rpc::LaneCall::Builder call, uint32_t count) const {
    auto range = call.initShared();
    range.setOffset(lease_.offset());
    range.setLength(count);
  }

private:
  Instance owner_;  // declared first: destroyed after the lease
  SharedArena::Lease lease_;
};

// A data call: laneCall with the request's range and flags.
template <typename Fill, typename Read>
LaneOutcome dataCall(void* handle, uint32_t count, uint64_t offset, uint32_t flags,
                     Fill&& fill, Read&& read, Target target = Target::LEAST_BUSY) {
  return laneCall(
      handle, target,
      [&](rpc::LaneCall::Builder call, const Instance& instance) {
        call.setCount(count);
        call.setOffset(offset);
        call.setFlags(flags);
        if constexpr (std::is_invocable_v<Fill, rpc::LaneCall::Builder, const Instance&>) {
          fill(call, instance);
        } else {
          fill(call);
        }
      },
      read);
}

int pyworkerPread(void* handle, void* buffer, uint32_t count, uint64_t offset, uint32_t flags) {
  return guarded("pread", -1, [&] {
    size_t received = count;
    SharedPayload shared;  // empty: the data comes in the reply
    auto [outcome, from] = dataCall(handle, count, offset, flags,
        [&](rpc::LaneCall::Builder call, const Instance& instance) {
          call.setPread();
          shared.lend(instance, count);
          if (shared) shared.describe(call, count);
        },
        [&](rpc::LaneReply::Reader reply) {
          received = decodePreadReply(reply, shared ? shared.data() : nullptr, buffer, count);
        });
    if (!outcome.report()) return -1;
    verify(from.get(), [&] { checkPreadSize(received, count); });
    return 0;
  });
}

int pyworkerPwrite(void* handle, const void* buffer, uint32_t count, uint64_t offset,
                   uint32_t flags) {
  return guarded("pwrite", -1, [&] {
    SharedPayload shared;
    auto [outcome, from] = dataCall(handle, count, offset, flags,
        [&](rpc::LaneCall::Builder call, const Instance& instance) {
          call.setPwrite();
          shared.lend(instance, count);
          if (shared) {
            memcpy(shared.data(), buffer, count);
            shared.describe(call, count);
          } else {
            call.setData(kj::arrayPtr(static_cast<const kj::byte*>(buffer), count));
          }
        },
        [](rpc::LaneReply::Reader) {});
    return outcome.report() ? 0 : -1;
  });
}

// flush, trim, zero and cache carry nothing but a Status back.
template <typename Select>
int statusLaneCall(const char* callback, void* handle, uint32_t count, uint64_t offset,
                   uint32_t flags, Select&& select, Target target = Target::LEAST_BUSY) {
  return guarded(callback, -1, [&] {
    auto result =
        dataCall(handle, count, offset, flags, select, [](rpc::LaneReply::Reader) {}, target);
    return result.outcome.report() ? 0 : -1;
  });
}

int pyworkerFlush(void* handle, uint32_t flags) {
  // can_multi_conn's promise holds across workers only if each handle has flushed.
  return statusLaneCall(
      "flush", handle, 0, 0, flags, [](rpc::LaneCall::Builder call) { call.setFlush(); },
      Target::EVERY);
}

int pyworkerTrim(void* handle, uint32_t count, uint64_t offset, uint32_t flags) {
  return statusLaneCall("trim", handle, count, offset, flags,
                        [](rpc::LaneCall::Builder call) { call.setTrim(); });
}

int pyworkerZero(void* handle, uint32_t count, uint64_t offset, uint32_t flags) {
  return statusLaneCall("zero", handle, count, offset, flags,
                        [](rpc::LaneCall::Builder call) { call.setZero(); });
}

int pyworkerCache(void* handle, uint32_t count, uint64_t offset, uint32_t flags) {
  return statusLaneCall("cache", handle, count, offset, flags,
                        [](rpc::LaneCall::Builder call) { call.setCache(); });
}

int pyworkerExtents(void* handle, uint32_t count, uint64_t offset, uint32_t flags,
                    struct nbdkit_extents* extents) {
  return guarded("extents", -1, [&] {
    size_t received = 0;
    std::vector<ExtentEntry> list;
    auto [outcome, from] = dataCall(handle, count, offset, flags,
        [](rpc::LaneCall::Builder call) { call.setExtents(); },
        [&](rpc::LaneReply::Reader reply) { received = decodeExtents(reply, list); });
    if (!outcome.report()) return -1;
    verify(from.get(), [&] {
      checkExtentCount(received);
      checkExtents(list);
    });
    for (auto& e : list) {
      if (nbdkit_add_extent(extents, e.offset, e.length, e.type) < 0) return -1;
    }
    return 0;
  });
}

const char CONFIG_HELP[] =
    "script=<FILENAME>     (required) The Python script to run (or give it as the\n"
    "                                 first bare parameter).\n"
    "worker=<PATH>                    The worker executable to run the script in.\n"
    "timeout=<SECONDS>                Kill a worker whose callback runs longer.\n"
    "memory=<SIZE>                    Address-space limit of each worker.\n"
    "max-restarts=<N>                 Worker deaths tolerated in restart-window\n"
    "                                 (default 5).\n"
    "restart-window=<SECONDS>         (default 60).\n"
    "workers=<N>                      Worker processes (default 1; state is per worker).\n"
    "recover=reopen                   A connection whose worker died is opened\n"
    "                                 again on its replacement (default off).\n"
    "spread=on                        A can_multi_conn connection uses every worker\n"
    "                                 (default off).\n"
    "debug-wait=true                  New workers wait for a debugger.\n"
    "pdb=on                           breakpoint() waits for tools/pyworker-debug pdb.\n"
    "sandbox=on|best-effort           Workers run under seccomp and Landlock.\n"
    "sandbox-allow=<PATH>[:ro]        A path a sandboxed script may write (or read).\n"
    "sandbox-net=off                  No sockets for a sandboxed script.\n"
    "worker-user=<USER>               The user (and worker-group=<GROUP> the group)\n"
    "                                 workers run as.\n"
    "[other arguments are passed to the script's config() function]";

}  // namespace
}  // namespace pyworker

#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL
// Constant-initialized (no global constructor); fields in the struct's declaration order. The
// fields left out are nbdkit's own or API 1's.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
static struct nbdkit_plugin plugin = {
    .name = "pyworker",
    .longname = "nbdkit Python plugin, out of process",
    .version = PACKAGE_VERSION,
    .unload = pyworker::pyworkerUnload,
    .config = pyworker::pyworkerConfig,
    .config_complete = pyworker::pyworkerConfigComplete,
    .config_help = pyworker::CONFIG_HELP,
    .open = pyworker::pyworkerOpen,
    .close = pyworker::pyworkerClose,
    .get_size = pyworker::pyworkerGetSize,
    .can_write = pyworker::pyworkerCanWrite,
    .can_flush = pyworker::pyworkerCanFlush,
    .is_rotational = pyworker::pyworkerIsRotational,
    .can_trim = pyworker::pyworkerCanTrim,
    .dump_plugin = pyworker::pyworkerDumpPlugin,
    .can_zero = pyworker::pyworkerCanZero,
    .can_fua = pyworker::pyworkerCanFua,
    .pread = pyworker::pyworkerPread,
    .pwrite = pyworker::pyworkerPwrite,
    .flush = pyworker::pyworkerFlush,
    .trim = pyworker::pyworkerTrim,
    .zero = pyworker::pyworkerZero,
    // No magic_config_key, as nbdkit python: nbdkit then makes the first bare argument
    // script=, and refuses any other bare word itself ("expecting key=value on the command
    // line but got: foo") instead of passing it as one more script=.
    .can_multi_conn = pyworker::pyworkerCanMultiConn,
    .can_extents = pyworker::pyworkerCanExtents,
    .extents = pyworker::pyworkerExtents,
    .can_cache = pyworker::pyworkerCanCache,
    .cache = pyworker::pyworkerCache,
    .thread_model = pyworker::pyworkerThreadModel,
    .can_fast_zero = pyworker::pyworkerCanFastZero,
    .preconnect = pyworker::pyworkerPreconnect,
    .get_ready = pyworker::pyworkerGetReady,
    .after_fork = pyworker::pyworkerAfterFork,
    .list_exports = pyworker::pyworkerListExports,
    .default_export = pyworker::pyworkerDefaultExport,
    .export_description = pyworker::pyworkerExportDescription,
    .cleanup = pyworker::pyworkerCleanup,
    .block_size = pyworker::pyworkerBlockSize,
};
#pragma GCC diagnostic pop
NBDKIT_REGISTER_PLUGIN(plugin)
