// The nbdkit callback table. Each callback is thin: capture what only nbdkit's thread knows,
// forward one call to the worker (process-wide callbacks and opening a connection as an RPC
// through the supervisor's link, a connection's callbacks on a lane), check the reply, apply
// it to nbdkit.

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <optional>
#include <string>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "guard.h"
#include "plugin-state.h"
#include "reply-checks.h"
#include "reply-decoding.h"
#include "script-outcome.h"
#include "serving-link.h"

#if !defined(PYWORKER_PYTHON_VERSION) || !defined(PYWORKER_PYTHON_ABI_VERSION)
#error "the build must define PYWORKER_PYTHON_VERSION and PYWORKER_PYTHON_ABI_VERSION"
#endif

// Set by nbdkit's -D pyworker.trace=1 (nbdkit looks the symbol up by name).
NBDKIT_DLL_PUBLIC int pyworker_debug_trace = 0;

namespace pyworker {
namespace {

struct Connection {
  // nbdkit's per-connection handle. The connection stays with the worker that opened it, even
  // after that worker is replaced for new connections. `handle` (releasing it is close())
  // belongs to that worker's RPC thread: it is created and destroyed only inside its
  // WorkerLink::run(). Calls on lanes name the same handle by `handleId`.
  std::shared_ptr<WorkerInstance> instance;
  std::optional<rpc::Handle::Client> handle;
  uint64_t handleId = 0;
};

struct ConnectionInfo {
  // Captured on nbdkit's connection thread, shipped with the call.
  bool hasExportName = false;
  std::string exportName;
  bool isTls = false;
  std::string peerAddress;
  int64_t peerPid = -1, peerUid = -1, peerGid = -1;

  static ConnectionInfo capture(bool withExportName, bool withTls) {
    ConnectionInfo info;
    if (withExportName) {
      if (const char* name = nbdkit_export_name()) {
        info.hasExportName = true;
        info.exportName = name;
      }
    }
    if (withTls) info.isTls = nbdkit_is_tls() == 1;
    // Under -s nbdkit serves its one connection on its main thread (any other connection has
    // a thread of its own), over what were its stdin and stdout; when those are pipes (as
    // over ssh) there is no peer, and nbdkit_peer_name() would log "peername: Socket
    // operation on non-socket".
    if (gettid() == getpid() && !state().stdinIsSocket()) return info;
    sockaddr_storage address;
    socklen_t length = sizeof(address);
    if (nbdkit_peer_name(reinterpret_cast<sockaddr*>(&address), &length) == 0 &&
        length <= sizeof(address)) {
      info.peerAddress.assign(reinterpret_cast<const char*>(&address), length);
      if (address.ss_family == AF_UNIX) {
        // Credentials exist only for Unix-domain peers; elsewhere nbdkit would log an error.
        info.peerPid = nbdkit_peer_pid();
        info.peerUid = nbdkit_peer_uid();
        info.peerGid = nbdkit_peer_gid();
      }
    }
    return info;
  }

  void fill(rpc::ConnectionContext::Builder context) const {
    context.setHasExportName(hasExportName);
    context.setExportName(bytes(exportName));
    context.setIsTls(isTls);
    context.setPeerAddress(bytes(peerAddress));
    context.setPeerPid(peerPid);
    context.setPeerUid(peerUid);
    context.setPeerGid(peerGid);
  }

private:
  static kj::ArrayPtr<const kj::byte> bytes(const std::string& s) {
    return kj::arrayPtr(reinterpret_cast<const kj::byte*>(s.data()), s.size());
  }
};

WorkerLink& link() { return state().supervisor().link(); }

enum class Pick { FIRST_WORKER, NEXT_WORKER };

// Runs call(link, instance) for a new connection's callbacks (preconnect, list_exports,
// default_export, open: nbdkit makes them only after after_fork). A worker that died a moment
// ago may not have been noticed yet; a new connection is owed a live worker, so a call that
// finds its worker gone is made once more, on the replacement.
template <typename Call>
void withLiveWorker(Pick pick, Call&& call) {
  auto& supervisor = state().supervisor();
  for (int attempt = 1;; ++attempt) {
    auto instance =
        pick == Pick::FIRST_WORKER ? supervisor.firstInstance() : supervisor.instance();
    try {
      call(instance->link(), instance);
      return;
    } catch (const kj::Exception& e) {
      if (e.getType() != kj::Exception::Type::DISCONNECTED || attempt > 1) throw;
      instance->link().markBroken();
    }
  }
}

template <typename Checks>
void verify(WorkerLink& link, Checks&& checks) {
  // Runs a reply's checks (reply-checks.h) on nbdkit's thread, after the reply was copied out.
  // A reply that no correct worker sends retires the worker that sent it: it is killed, so
  // every later call on it fails, and the next connection gets a new one. Either way the
  // request fails (guarded() logs the BadReply and sets EIO).
  try {
    checks();
  } catch (const BadReply& e) {
    if (e.blame == BadReply::WORKER) {
      // Before the fork (ConfigPhaseLink) a failure makes nbdkit exit anyway.
      if (auto* serving = dynamic_cast<ServingLink*>(&link)) serving->reject();
    }
    throw;
  }
}

ServingLink& linkOf(void* handle) {
  return static_cast<Connection*>(handle)->instance->link();
}

// Sends a Worker request that carries only a Status back, and applies it.
template <typename Request>
int simpleWorkerCall(WorkerLink& link, Request&& makeRequest) {
  ScriptOutcome outcome;
  link.run([&](rpc::Worker::Client& worker) {
    return makeRequest(worker).send().then(
        [&](auto response) { outcome = ScriptOutcome::from(response.getStatus()); });
  });
  return outcome.report() ? 0 : -1;
}

template <typename Request>
void runStatusCall(WorkerLink& link, Request&& makeRequest) {
  if (simpleWorkerCall(link, makeRequest) < 0) throw ScriptFailed();
}

// Runs one call on a lane to the connection's worker (ServingLink::runLaneCall): `fill` sets
// what is particular to the call (which callback, its arguments), `read` copies the reply's
// particulars out, on success only. Returns the outcome.
template <typename Fill, typename Read>
ScriptOutcome laneCall(void* handle, Fill&& fill, Read&& read) {
  auto& connection = *static_cast<Connection*>(handle);
  ScriptOutcome outcome;
  connection.instance->link().runLaneCall(
      [&](rpc::LaneCall::Builder call) {
        call.setHandle(connection.handleId);
        fill(call);
      },
      [&](rpc::LaneReply::Reader reply) {
        outcome = ScriptOutcome::from(reply.getStatus());
        if (outcome.error == 0) read(reply);
      });
  return outcome;
}

int query(void* handle, const char* callback, rpc::Query which, int maximum) {
  return guarded(callback, -1, [&] {
    int32_t value = 0;
    auto outcome = laneCall(
        handle, [&](rpc::LaneCall::Builder call) { call.setQuery(which); },
        [&](rpc::LaneReply::Reader reply) { value = reply.getValue(); });
    if (!outcome.report()) return -1;
    verify(linkOf(handle), [&] { checkQueryAnswer(callback, value, maximum); });
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
    state().supervisor().forEachWorker([](WorkerLink& link) {
      runStatusCall(link, [](rpc::Worker::Client& w) { return w.configCompleteRequest(); });
    });
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
      ScriptOutcome outcome;
      int32_t model = 0;
      link.run([&](rpc::Worker::Client& worker) {
        return worker.threadModelRequest().send().then([&](auto response) {
          outcome = ScriptOutcome::from(response.getStatus());
          model = response.getModel();
        });
      });
      if (!outcome.report()) throw ScriptFailed();
      verify(link, [&] { checkThreadModel(model); });
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
    state().supervisor().forEachWorker([](WorkerLink& link) {
      runStatusCall(link, [](rpc::Worker::Client& w) { return w.getReadyRequest(); });
    });
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
    state().supervisor().forEachWorker([](WorkerLink& link) {
      link.run([](rpc::Worker::Client& worker) {
        return worker.cleanupRequest().send().ignoreResult();
      });
    });
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
    // No export name yet, and nbdkit_is_tls() is not available this early.
    auto info = ConnectionInfo::capture(false, false);
    int result = -1;
    withLiveWorker(Pick::FIRST_WORKER, [&](WorkerLink& link, auto&&) {
      result = simpleWorkerCall(link, [&](rpc::Worker::Client& w) {
        auto request = w.preconnectRequest();
        request.setReadonly(readonly);
        info.fill(request.initContext());
        return request;
      });
    });
    return result;
  });
}

int pyworkerListExports(int readonly, int isTls, struct nbdkit_exports* exports) {
  return guarded("list_exports", -1, [&] {
    auto info = ConnectionInfo::capture(false, false);
    info.isTls = isTls;
    ScriptOutcome outcome;
    ExportList list;
    WorkerLink* from = nullptr;
    std::shared_ptr<WorkerInstance> keep;  // so that `from` outlives the checks below
    withLiveWorker(Pick::FIRST_WORKER, [&](WorkerLink& link, auto&& instance) {
      from = &link;
      keep = instance;
      link.run([&](rpc::Worker::Client& worker) {
        auto request = worker.listExportsRequest();
        request.setReadonly(readonly);
        info.fill(request.initContext());
        return request.send().then([&](auto response) {
          outcome = ScriptOutcome::from(response.getStatus());
          list = decodeExportList(response);
        });
      });
    });
    if (!outcome.report()) return -1;
    if (list.useDefault) return nbdkit_use_default_export(exports);
    verify(*from, [&] { checkExportList(list); });
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
    auto info = ConnectionInfo::capture(false, false);
    info.isTls = isTls;
    ScriptOutcome outcome;
    std::string name;
    WorkerLink* from = nullptr;
    std::shared_ptr<WorkerInstance> keep;  // so that `from` outlives the check below
    withLiveWorker(Pick::FIRST_WORKER, [&](WorkerLink& link, auto&& instance) {
      from = &link;
      keep = instance;
      link.run([&](rpc::Worker::Client& worker) {
        auto request = worker.defaultExportRequest();
        request.setReadonly(readonly);
        info.fill(request.initContext());
        return request.send().then([&](auto response) {
          outcome = ScriptOutcome::from(response.getStatus());
          name = decodeDefaultExport(response);
        });
      });
    });
    if (!outcome.report()) return nullptr;
    verify(*from, [&] { checkText(name, "default export name"); });
    return nbdkit_strdup_intern(name.c_str());
  });
}

void* pyworkerOpen(int readonly) {
  return guarded("open", static_cast<void*>(nullptr), [&]() -> void* {
    auto info = ConnectionInfo::capture(true, true);
    ScriptOutcome outcome;
    auto connection = std::make_unique<Connection>();
    withLiveWorker(Pick::NEXT_WORKER, [&](WorkerLink& link, auto&& instance) {
      connection->instance = instance;
      link.run([&](rpc::Worker::Client& worker) {
        auto request = worker.openRequest();
        request.setReadonly(readonly);
        info.fill(request.initContext());
        return request.send().then([&](auto response) {
          outcome = ScriptOutcome::from(response.getStatus());
          if (outcome.error == 0) {
            connection->handle = response.getHandle();
            connection->handleId = response.getHandleId();
          }
        });
      });
    });
    if (!outcome.report()) return nullptr;
    return connection.release();
  });
}

void pyworkerClose(void* handle) {
  std::unique_ptr<Connection> connection(static_cast<Connection*>(handle));
  bool dropped = guarded("close", false, [&] {
    // Dropping the capability is the script's close(); it must happen on the RPC thread.
    connection->instance->link().run([&](rpc::Worker::Client&) {
      connection->handle.reset();
      return kj::READY_NOW;
    });
    return true;
  });
  // If the RPC thread is gone the capability cannot be dropped safely: leak it.
  if (!dropped) (void)connection.release();
}

const char* pyworkerExportDescription(void* handle) {
  return guarded("export_description", static_cast<const char*>(nullptr),
                 [&]() -> const char* {
                   std::optional<std::string> description;
                   auto outcome = laneCall(
                       handle,
                       [](rpc::LaneCall::Builder call) { call.setExportDescription(); },
                       [&](rpc::LaneReply::Reader reply) {
                         description = decodeExportDescription(reply);
                       });
                   if (!outcome.report() || !description) return nullptr;
                   verify(linkOf(handle),
                          [&] { checkText(*description, "export description"); });
                   return nbdkit_strdup_intern(description->c_str());
                 });
}

int64_t pyworkerGetSize(void* handle) {
  return guarded("get_size", int64_t{-1}, [&]() -> int64_t {
    int64_t size = 0;
    auto outcome = laneCall(
        handle, [](rpc::LaneCall::Builder call) { call.setGetSize(); },
        [&](rpc::LaneReply::Reader reply) { size = reply.getSize(); });
    if (!outcome.report()) return -1;
    verify(linkOf(handle), [&] { checkSize(size); });
    return size;
  });
}

int pyworkerBlockSize(void* handle, uint32_t* minimum, uint32_t* preferred, uint32_t* maximum) {
  return guarded("block_size", -1, [&] {
    auto outcome = laneCall(
        handle, [](rpc::LaneCall::Builder call) { call.setBlockSize(); },
        [&](rpc::LaneReply::Reader reply) {
          *minimum = reply.getMinimum();
          *preferred = reply.getPreferred();
          *maximum = reply.getMaximum();
        });
    if (!outcome.report()) return -1;
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

// Payloads from this size up go through the data memory shared with the worker instead of
// inside the messages (two copies fewer); smaller ones are cheaper inline.
constexpr uint32_t SHARED_PAYLOAD_MINIMUM = 32 * 1024;

SharedArena::Lease sharedRangeFor(void* handle, uint32_t count) {
  if (count < SHARED_PAYLOAD_MINIMUM) return {};
  return static_cast<Connection*>(handle)->instance->process().sharedData().lease(count);
}

// A data call: laneCall with the request's range and flags.
template <typename Fill, typename Read>
ScriptOutcome dataCall(void* handle, uint32_t count, uint64_t offset, uint32_t flags,
                       Fill&& fill, Read&& read) {
  return laneCall(
      handle,
      [&](rpc::LaneCall::Builder call) {
        call.setCount(count);
        call.setOffset(offset);
        call.setFlags(flags);
        fill(call);
      },
      read);
}

void setShared(rpc::LaneCall::Builder call, const SharedArena::Lease& shared, uint32_t count) {
  auto range = call.initShared();
  range.setOffset(shared.offset());
  range.setLength(count);
}

int pyworkerPread(void* handle, void* buffer, uint32_t count, uint64_t offset, uint32_t flags) {
  return guarded("pread", -1, [&] {
    size_t received = count;
    auto shared = sharedRangeFor(handle, count);  // empty: the data comes in the reply
    auto outcome = dataCall(handle, count, offset, flags,
        [&](rpc::LaneCall::Builder call) {
          call.setPread();
          if (shared) setShared(call, shared, count);
        },
        [&](rpc::LaneReply::Reader reply) {
          auto data = reply.getData();
          if (shared) {
            // The script filled our range; the reply itself must carry nothing.
            received = data.size() == 0 ? count : count + data.size();
            if (received == count) memcpy(buffer, shared.data(), count);
          } else {
            received = data.size();
            if (received == count) memcpy(buffer, data.begin(), count);
          }
        });
    if (!outcome.report()) return -1;
    verify(linkOf(handle), [&] { checkPreadSize(received, count); });
    return 0;
  });
}

int pyworkerPwrite(void* handle, const void* buffer, uint32_t count, uint64_t offset,
                   uint32_t flags) {
  return guarded("pwrite", -1, [&] {
    auto shared = sharedRangeFor(handle, count);
    if (shared) memcpy(shared.data(), buffer, count);
    auto outcome = dataCall(handle, count, offset, flags,
        [&](rpc::LaneCall::Builder call) {
          call.setPwrite();
          if (shared) {
            setShared(call, shared, count);
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
                   uint32_t flags, Select&& select) {
  return guarded(callback, -1, [&] {
    auto outcome = dataCall(handle, count, offset, flags, select, [](rpc::LaneReply::Reader) {});
    return outcome.report() ? 0 : -1;
  });
}

int pyworkerFlush(void* handle, uint32_t flags) {
  return statusLaneCall("flush", handle, 0, 0, flags,
                        [](rpc::LaneCall::Builder call) { call.setFlush(); });
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
    auto outcome = dataCall(handle, count, offset, flags,
        [](rpc::LaneCall::Builder call) { call.setExtents(); },
        [&](rpc::LaneReply::Reader reply) {
          auto entries = reply.getExtents();
          received = entries.size();
          if (received > MAX_EXTENTS) return;  // refused below, without copying
          list.reserve(received);
          for (auto e : entries) list.push_back({e.getOffset(), e.getLength(), e.getType()});
        });
    if (!outcome.report()) return -1;
    verify(linkOf(handle), [&] {
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
    "debug-wait=true                  New workers wait for a debugger.\n"
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
