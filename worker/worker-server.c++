#include "worker-server.h"

#include <grp.h>
#include <optional>

#include "call-context.h"
#include "debugger-wait.h"
#include "pdb-rendezvous.h"
#include "pdb-session.h"
#include "process-title.h"
#include "handle-callbacks.h"
#include "host-link.h"
#include "python-executor.h"
#include "script.h"
#include "value-conversions.h"

#include <capnp/schema.h>
#include <kj/debug.h>

#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace pyworker {

template <typename T>
kj::Promise<T> WorkerServer::onMainThread(kj::Function<T()> job) {
  // Synchronously, on this (the loop) thread: nothing else is going on in the config phase,
  // and the worker's main thread is where nbdkit runs these callbacks in-process (a script
  // may call signal.signal() in config, and the threading module it imports takes this
  // thread for the main one).
  kj::Maybe<T> result;
  KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() { result = job(); })) {
    return kj::mv(*exception);
  }
  return kj::mv(KJ_ASSERT_NONNULL(result));
}

Outcome WorkerServer::runOptional(const char* callback) {
  return services.script.call(callback, nullptr, [&]() {
    if (PyRef fn = services.script.lookup(callback)) {
      checked(PyObject_CallNoArgs(fn.get()));
    }
  });
}

kj::Promise<Outcome> WorkerServer::callOptional(const char* callback) {
  return onMainThread<Outcome>([this, callback]() { return runOptional(callback); });
}

kj::Promise<void> WorkerServer::load(LoadContext context) {
  auto params = context.getParams();
  services.host.setHost(params.getHost());
  std::string path = params.getScript();
  bool debugWait = params.getDebugWait();
  bool pdb = params.getPdb();
  struct Result { Outcome outcome; Script::LoadFailure failure; };
  return onMainThread<Result>([this, path, debugWait, pdb]() {
    if (pdb) {
      GilScope gil;
      enablePdb(services.host);
    }
    if (debugWait && !pdb) waitForDebugger();  // with pdb: in pdb, at the first line
    Result result;
    result.outcome = services.script.load(path, result.failure, debugWait && pdb);
    return result;
  }).then([this, context](Result result) mutable {
    auto results = context.getResults();
    result.outcome.fill(results.initStatus());
    results.setPrinted(result.failure.printed);
    results.setExitStatus(result.failure.exitStatus);
    auto info = results.initInfo();
    info.setApiVersion(services.script.apiVersion());
    info.setPythonVersion(PY_VERSION);
    info.setPep384AbiVersion(3);  // Py_LIMITED_API's major version, as nbdkit reports it
  });
}

kj::Promise<void> WorkerServer::config(ConfigContext context) {
  auto params = context.getParams();
  std::string key = params.getKey();
  std::string value = params.getValue();
  return onMainThread<Outcome>([this, key, value]() {
    bool absent = false;
    Outcome outcome = services.script.call("config", nullptr, [&]() {
      PyRef fn = services.script.lookup("config");
      if (!fn) {
        absent = true;
        return;
      }
      checked(PyObject_CallFunction(fn.get(), "ss", key.c_str(), value.c_str()));
    });
    if (absent) {
      // What nbdkit says for a plugin without .config.
      outcome.error = EINVAL;
      outcome.message =
          services.script.path() + ": this plugin does not need command line configuration";
    }
    return outcome;
  }).then([context](Outcome outcome) mutable {
    outcome.fill(context.getResults().initStatus());
  });
}

kj::Promise<void> WorkerServer::configComplete(ConfigCompleteContext context) {
  return callOptional("config_complete").then([context](Outcome outcome) mutable {
    outcome.fill(context.getResults().initStatus());
  });
}

kj::Promise<void> WorkerServer::threadModel(ThreadModelContext context) {
  struct Result { Outcome outcome; int32_t model = 1; };  // SERIALIZE_ALL_REQUESTS
  return onMainThread<Result>([this]() {
    Result result;
    result.outcome = services.script.call("thread_model", nullptr, [&]() {
      if (PyRef fn = services.script.lookup("thread_model")) {
        PyRef model = checked(PyObject_CallNoArgs(fn.get()));
        result.model = toChoice(model.get(), "thread_model", 3,
                                "nbdkit.THREAD_MODEL_SERIALIZE_CONNECTIONS, "
                                "THREAD_MODEL_SERIALIZE_ALL_REQUESTS, "
                                "THREAD_MODEL_SERIALIZE_REQUESTS or THREAD_MODEL_PARALLEL");
      }
    });
    return result;
  }).then([context](Result result) mutable {
    auto results = context.getResults();
    result.outcome.fill(results.initStatus());
    results.setModel(result.model);
  });
}

kj::Promise<void> WorkerServer::getReady(GetReadyContext context) {
  return callOptional("get_ready").then([context](Outcome outcome) mutable {
    outcome.fill(context.getResults().initStatus());
  });
}

namespace {

std::optional<std::string> becomeUser(int64_t uid, int64_t gid) {
  // Mirrors nbdkit's change_user(): the daemon dropped privileges after this worker started.
  if (gid >= 0) {
    gid_t g = static_cast<gid_t>(gid);
    if (setgroups(1, &g) == -1) return std::string("setgroups: ") + strerror(errno);
    if (setgid(g) == -1) return std::string("setgid: ") + strerror(errno);
  }
  if (uid >= 0 && setuid(static_cast<uid_t>(uid)) == -1) {
    return std::string("setuid: ") + strerror(errno);
  }
  return std::nullopt;
}

}  // namespace

kj::Promise<void> WorkerServer::afterFork(AfterForkContext context) {
  auto params = context.getParams();
  std::string directory = params.getDirectory();
  if (!directory.empty() && chdir(directory.c_str()) == -1) {
    int error = errno;
    Outcome outcome = services.script.failure(
        "after_fork", "chdir: " + directory + ": " + strerror(error), error);
    outcome.fill(context.getResults().initStatus());
    return kj::READY_NOW;
  }
  if (params.getUid() >= 0 || params.getGid() >= 0) {
    // pdb=on: breakpoints at load made their directory as the user before; the new one
    // could not enter it, nor remove it.
    removePdbRendezvous();
  }
  if (auto failure = becomeUser(params.getUid(), params.getGid())) {
    services.script.failure("after_fork", *failure, EPERM).fill(context.getResults().initStatus());
    return kj::READY_NOW;
  }
  services.host.setHost(params.getHost());
  if (params.getNbdkitPid() > 0) setWorkerTitle("", static_cast<pid_t>(params.getNbdkitPid()));
  struct Result {
    Outcome outcome;
    bool preconnect, listExports, defaultExport, blockSize, exportDescription;
    std::vector<int32_t> fixedAnswers;
  };
  return onMainThread<Result>([this]() {
    Outcome outcome = runOptional("after_fork");
    // What the script has once it serves, in the same trip: see Worker.afterFork.
    GilScope gil;
    Result result{kj::mv(outcome), services.script.defined("preconnect"),
                  services.script.defined("list_exports"),
                  services.script.defined("default_export"),
                  services.script.defined("block_size"),
                  services.script.defined("export_description"), {}};
    HandleCallbacks callbacks(services.script, services.host);
    for (auto query : capnp::Schema::from<rpc::Query>().getEnumerants()) {
      auto which = static_cast<rpc::Query>(query.getOrdinal());
      result.fixedAnswers.push_back(callbacks.answerWithoutScript(which).value_or(-1));
    }
    return result;
  }).then([context](Result result) mutable {
    auto results = context.getResults();
    result.outcome.fill(results.initStatus());
    auto defines = results.initDefines();
    defines.setPreconnect(result.preconnect);
    defines.setListExports(result.listExports);
    defines.setDefaultExport(result.defaultExport);
    defines.setBlockSize(result.blockSize);
    defines.setExportDescription(result.exportDescription);
    auto answers = results.initFixedAnswers(result.fixedAnswers.size());
    for (size_t i = 0; i < result.fixedAnswers.size(); ++i) answers.set(i, result.fixedAnswers[i]);
  });
}

kj::Promise<void> WorkerServer::cleanup(CleanupContext) {
  // After every close(): nbdkit's order, and scripts free shared state in cleanup(). The
  // plugin has closed its connections' handles on lanes; any it could not are closed here
  // (a call still running on one, which a correct plugin never leaves, gets time to end).
  return onMainThread<Outcome>([this]() {
    HandleCallbacks(services.script, services.host)
        .closeLeftOver(services.handles, std::chrono::seconds(5));
    return runOptional("cleanup");
  }).then([this](Outcome outcome) {
    if (!outcome.ok()) services.host.error(outcome.message);
  });
}

kj::Promise<void> WorkerServer::dumpPlugin(DumpPluginContext context) {
  struct Result { Outcome outcome; std::string text; };
  return onMainThread<Result>([this]() {
    Result result;
    result.outcome = services.script.call("dump_plugin", nullptr, [&]() {
      PyRef fn = services.script.lookup("dump_plugin");
      if (!fn) return;
      // nbdkit prints the text on its own stdout; here stdout is stderr, so capture it.
      PyRef io = checked(PyImport_ImportModule("io"));
      PyRef capture = checked(PyObject_CallMethod(io.get(), "StringIO", nullptr));
      PyRef saved = PyRef::borrow(PySys_GetObject("stdout"));
      if (PySys_SetObject("stdout", capture.get()) < 0) throw PythonError{};
      PyRef returned(PyObject_CallNoArgs(fn.get()));
      PyObject *type, *value, *trace;
      PyErr_Fetch(&type, &value, &trace);
      PySys_SetObject("stdout", saved ? saved.get() : Py_None);
      PyErr_Restore(type, value, trace);
      if (!returned) throw PythonError{};
      PyRef text = checked(PyObject_CallMethod(capture.get(), "getvalue", nullptr));
      result.text = lossyUtf8(text.get());
    });
    return result;
  }).then([context](Result result) mutable {
    auto results = context.getResults();
    result.outcome.fill(results.initStatus());
    results.setText(result.text);
  });
}

kj::Promise<void> WorkerServer::preconnect(PreconnectContext context) {
  auto params = context.getParams();
  bool readonly = params.getReadonly();
  auto connection = ConnectionContext::from(params.getContext());
  return services.executor.run<Outcome>([this, readonly, connection]() {
    return services.script.call("preconnect", &connection, [&]() {
      if (PyRef fn = services.script.lookup("preconnect")) {
        checked(PyObject_CallFunctionObjArgs(fn.get(), readonly ? Py_True : Py_False,
                                             nullptr));
      }
    });
  }).then([context](Outcome outcome) mutable {
    outcome.fill(context.getResults().initStatus());
  });
}

kj::Promise<void> WorkerServer::listExports(ListExportsContext context) {
  auto params = context.getParams();
  bool readonly = params.getReadonly();
  auto connection = ConnectionContext::from(params.getContext());
  struct Result { Outcome outcome; bool useDefault = true; std::vector<ExportValue> exports; };
  return services.executor.run<Result>([this, readonly, connection]() {
    Result result;
    result.outcome = services.script.call("list_exports", &connection, [&]() {
      if (PyRef fn = services.script.lookup("list_exports")) {
        result.useDefault = false;
        PyRef list = checked(PyObject_CallFunctionObjArgs(
            fn.get(), readonly ? Py_True : Py_False, connection.isTls ? Py_True : Py_False,
            nullptr));
        result.exports = toExports(list.get(), "list_exports");
      }
    });
    return result;
  }).then([context](Result result) mutable {
    auto results = context.getResults();
    result.outcome.fill(results.initStatus());
    results.setUseDefault(result.useDefault);
    auto list = results.initExports(result.exports.size());
    for (size_t i = 0; i < result.exports.size(); ++i) {
      list[i].setName(result.exports[i].name);
      list[i].setDescription(result.exports[i].description);
      list[i].setHasDescription(result.exports[i].hasDescription);
    }
  });
}

kj::Promise<void> WorkerServer::defaultExport(DefaultExportContext context) {
  auto params = context.getParams();
  bool readonly = params.getReadonly();
  auto connection = ConnectionContext::from(params.getContext());
  struct Result { Outcome outcome; std::string name; };
  return services.executor.run<Result>([this, readonly, connection]() {
    Result result;
    result.outcome = services.script.call("default_export", &connection, [&]() {
      if (PyRef fn = services.script.lookup("default_export")) {
        PyRef name = checked(PyObject_CallFunctionObjArgs(
            fn.get(), readonly ? Py_True : Py_False, connection.isTls ? Py_True : Py_False,
            nullptr));
        auto text = textAsNbdkit(name.get(), "default_export", "the export name");
        if (!text) throw ScriptError{"default_export method did not return a string", false, true};
        result.name = *text;
      }
    });
    return result;
  }).then([context](Result result) mutable {
    auto results = context.getResults();
    result.outcome.fill(results.initStatus());
    results.setName(result.name);
  });
}

}  // namespace pyworker
