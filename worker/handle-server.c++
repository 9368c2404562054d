#include "handle-server.h"

#include "host-link.h"
#include "python-executor.h"
#include "script.h"
#include "value-conversions.h"

#include <chrono>
#include <thread>

namespace pyworker {

HandleServer::HandleServer(Services services, std::shared_ptr<OpenHandle> open)
    : services(services), open(kj::mv(open)), id(services.handles.add(this->open)) {}

HandleServer::~HandleServer() noexcept(false) {
  services.handles.remove(id);  // no new data call finds it
  Services services = this->services;
  services.closes.add(services.executor.run<void>([services, open = kj::mv(open)]() {
    // A correct plugin closes only after the connection's last data call was answered, and a
    // lane lets go of the handle before it answers; close() must still never overlap a call.
    while (open.use_count() > 1) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    Outcome outcome = services.script.call("close", &open->connection, [&]() {
      if (PyRef close = services.script.lookup("close")) {
        checked(PyObject_CallFunctionObjArgs(close.get(), open->handle.get(), nullptr));
      }
    });
    {
      GilScope gil;
      open->handle = PyRef();  // the script's handle object goes away after close(), as in-process
    }
    if (!outcome.ok()) services.host.error(outcome.message);
  }));
}

template <typename T>
kj::Promise<T> HandleServer::onPool(kj::Function<T()> job) {
  return services.executor.run<T>(kj::mv(job));
}

Outcome HandleServer::call(const char* callback, kj::FunctionParam<void()> body) {
  return services.script.call(callback, &open->connection, body);
}

kj::Promise<void> HandleServer::getSize(GetSizeContext context) {
  struct Result { Outcome outcome; int64_t size = 0; };
  return onPool<Result>([this]() {
    Result result;
    result.outcome = call("get_size", [&]() {
      PyRef fn = services.script.lookup("get_size");
      if (!fn) throw ScriptError{"the script has no get_size function"};
      PyRef size = checked(PyObject_CallFunctionObjArgs(fn.get(), open->handle.get(), nullptr));
      result.size = toSize(size.get(), "get_size");
    });
    return result;
  }).then([context](Result result) mutable {
    auto results = context.getResults();
    result.outcome.fill(results.initStatus());
    results.setSize(result.size);
  });
}

kj::Promise<void> HandleServer::blockSize(BlockSizeContext context) {
  struct Result { Outcome outcome; BlockSize sizes; };
  return onPool<Result>([this]() {
    Result result;
    result.outcome = call("block_size", [&]() {
      if (PyRef fn = services.script.lookup("block_size")) {
        PyRef sizes = checked(PyObject_CallFunctionObjArgs(fn.get(), open->handle.get(), nullptr));
        result.sizes = toBlockSize(sizes.get(), "block_size");
      }
    });
    return result;
  }).then([context](Result result) mutable {
    auto results = context.getResults();
    result.outcome.fill(results.initStatus());
    results.setMinimum(result.sizes.minimum);
    results.setPreferred(result.sizes.preferred);
    results.setMaximum(result.sizes.maximum);
  });
}

kj::Promise<void> HandleServer::exportDescription(ExportDescriptionContext context) {
  struct Result { Outcome outcome; std::string description; bool has = false; };
  return onPool<Result>([this]() {
    Result result;
    result.outcome = call("export_description", [&]() {
      if (PyRef fn = services.script.lookup("export_description")) {
        PyRef text = checked(PyObject_CallFunctionObjArgs(fn.get(), open->handle.get(), nullptr));
        result.description = utf8(text.get(), "export_description", "the description");
        result.has = true;
      }
    });
    return result;
  }).then([context](Result result) mutable {
    auto results = context.getResults();
    result.outcome.fill(results.initStatus());
    results.setDescription(result.description);
    results.setHasDescription(result.has);
  });
}

kj::Promise<void> HandleServer::query(QueryContext context) {
  struct Question {
    const char* callback;
    enum Kind { BOOLEAN, FUA, CACHE } kind;
    const char* implied;  // the callback whose presence is the default answer, or null
    bool impliedMeans;    // answer when `implied` is defined (negated when it is not)
  };
  static const Question questions[] = {
      {"can_write", Question::BOOLEAN, "pwrite", true},
      {"can_flush", Question::BOOLEAN, "flush", true},
      {"is_rotational", Question::BOOLEAN, nullptr, false},
      {"can_trim", Question::BOOLEAN, "trim", true},
      {"can_zero", Question::BOOLEAN, "zero", true},
      {"can_fast_zero", Question::BOOLEAN, "zero", false},
      // Without can_fast_zero, 1.32 says yes when there is no zero: nbdkit then fails fast
      // zero requests itself instead of writing slowly.
      {"can_fua", Question::FUA, "flush", true},
      {"can_cache", Question::CACHE, "cache", true},
      {"can_extents", Question::BOOLEAN, "extents", true},
      {"can_multi_conn", Question::BOOLEAN, nullptr, false},
  };
  auto which = static_cast<size_t>(context.getParams().getQuery());
  if (which >= kj::size(questions)) {
    KJ_FAIL_REQUIRE("unknown query", which);
  }
  const Question& question = questions[which];
  struct Result { Outcome outcome; int32_t value = 0; };
  return onPool<Result>([this, &question]() {
    Result result;
    result.outcome = call(question.callback, [&]() {
      if (PyRef fn = services.script.lookup(question.callback)) {
        PyRef answer = checked(PyObject_CallFunctionObjArgs(fn.get(), open->handle.get(), nullptr));
        switch (question.kind) {
        case Question::BOOLEAN:
          result.value = toBool(answer.get());
          break;
        case Question::FUA:
          result.value = toChoice(answer.get(), question.callback, 2,
                                  "nbdkit.FUA_NONE, FUA_EMULATE or FUA_NATIVE");
          break;
        case Question::CACHE:
          result.value = toChoice(answer.get(), question.callback, 2,
                                  "nbdkit.CACHE_NONE, CACHE_EMULATE or CACHE_NATIVE");
          break;
        }
        return;
      }
      bool implied = question.implied && services.script.defined(question.implied);
      bool answer = question.implied ? implied == question.impliedMeans : false;
      switch (question.kind) {
      case Question::BOOLEAN: result.value = answer; break;
      case Question::FUA: result.value = answer ? 1 : 0; break;    // FUA_EMULATE : FUA_NONE
      case Question::CACHE: result.value = answer ? 2 : 0; break;  // CACHE_NATIVE : CACHE_NONE
      }
    });
    return result;
  }).then([context](Result result) mutable {
    auto results = context.getResults();
    result.outcome.fill(results.initStatus());
    results.setValue(result.value);
  });
}

}  // namespace pyworker
