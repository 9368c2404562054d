#include "handle-server.h"

#include "host-link.h"
#include "python-executor.h"
#include "script.h"
#include "value-conversions.h"

#include <cerrno>

namespace pyworker {

namespace {

bool releaseView(PyObject* view) {
  // memoryview.release(), keeping any exception the callback raised. It fails when the
  // script still holds an export of the view (a numpy array made from it, say); a slice or
  // memoryview(buf) kept by the script survives it, still sharing the managed buffer.
  PyObject *type, *value, *trace;
  PyErr_Fetch(&type, &value, &trace);
  PyRef result(PyObject_CallMethod(view, "release", nullptr));
  PyErr_Clear();
  PyErr_Restore(type, value, trace);
  auto* managed = reinterpret_cast<PyMemoryViewObject*>(view)->mbuf;
  return result && managed->exports == 0;
}

PyRef callWithView(PyObject* view, const char* callback, kj::FunctionParam<PyObject*()> call) {
  PyRef result(call());
  bool released = releaseView(view);
  if (!result) throw PythonError{};
  if (!released) {
    // WARNING: the memory stays reachable from Python; all we can do is report it.
    throw ScriptError{std::string(callback) +
                      " kept a reference to its buffer after returning; copy the data instead"};
  }
  return result;
}

}  // namespace

HandleServer::HandleServer(Services services, PyRef handle, ConnectionInfo connection)
    : services(services), handle(kj::mv(handle)), connection(kj::mv(connection)) {}

HandleServer::~HandleServer() noexcept(false) {
  Services services = this->services;
  services.closes.add(services.executor.run<void>(
      [services, handle = kj::mv(handle), connection = kj::mv(connection)]() mutable {
        Outcome outcome = services.script.call("close", &connection, [&]() {
          if (PyRef close = services.script.lookup("close")) {
            checked(PyObject_CallFunctionObjArgs(close.get(), handle.get(), nullptr));
          }
        });
        {
          GilScope gil;
          handle = PyRef();  // the script's handle object goes away after close(), as in-process
        }
        if (!outcome.ok()) services.host.error(outcome.message);
      }));
}

template <typename T>
kj::Promise<T> HandleServer::onPool(kj::Function<T()> job) {
  return services.executor.run<T>(kj::mv(job));
}

Outcome HandleServer::call(const char* callback, kj::FunctionParam<void()> body) {
  return services.script.call(callback, &connection, body);
}

kj::Promise<void> HandleServer::getSize(GetSizeContext context) {
  struct Result { Outcome outcome; int64_t size = 0; };
  return onPool<Result>([this]() {
    Result result;
    result.outcome = call("get_size", [&]() {
      PyRef fn = services.script.lookup("get_size");
      if (!fn) throw ScriptError{"the script has no get_size function"};
      PyRef size = checked(PyObject_CallFunctionObjArgs(fn.get(), handle.get(), nullptr));
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
        PyRef sizes = checked(PyObject_CallFunctionObjArgs(fn.get(), handle.get(), nullptr));
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
        PyRef text = checked(PyObject_CallFunctionObjArgs(fn.get(), handle.get(), nullptr));
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
        PyRef answer = checked(PyObject_CallFunctionObjArgs(fn.get(), handle.get(), nullptr));
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

uint8_t* HandleServer::sharedRange(rpc::SharedRange::Reader range, uint32_t count) {
  // The plugin names the range; a range outside the mapping is a plugin bug, not a script's.
  KJ_REQUIRE(range.getLength() == count && range.getOffset() <= services.data.size &&
                 count <= services.data.size - range.getOffset(),
             "shared range outside the data memory", range.getOffset(), count,
             services.data.size);
  return services.data.base + range.getOffset();
}

kj::Promise<void> HandleServer::pread(PreadContext context) {
  auto params = context.getParams();
  uint32_t count = params.getCount();
  uint64_t offset = params.getOffset();
  uint32_t flags = params.getFlags();
  // The script writes straight into the shared range the plugin named, or else into the reply
  // (allocated here, on the loop thread).
  uint8_t* buffer;
  if (params.hasShared()) {
    buffer = sharedRange(params.getShared(), count);
  } else {
    buffer = context.getResults().initData(count).begin();
  }
  return onPool<Outcome>([this, buffer, count, offset, flags]() {
    return call("pread", [&]() {
      PyRef fn = services.script.lookup("pread");
      if (!fn) throw ScriptError{"the script has no pread function"};
      if (services.script.apiVersion() == 1) {
        PyRef result = checked(PyObject_CallFunction(fn.get(), "OIK", handle.get(), count,
                                                     static_cast<unsigned long long>(offset)));
        Py_buffer view;
        if (PyObject_GetBuffer(result.get(), &view, PyBUF_SIMPLE) < 0) {
          PyErr_Clear();
          throw ScriptError{"value returned from pread does not support the buffer protocol",
                            true};
        }
        bool tooSmall = view.len < static_cast<Py_ssize_t>(count);
        if (!tooSmall) memcpy(buffer, view.buf, count);  // longer: truncated, as in-process
        PyBuffer_Release(&view);
        if (tooSmall) throw ScriptError{"buffer returned from pread is too small", true};
      } else {
        PyRef view = checked(PyMemoryView_FromMemory(reinterpret_cast<char*>(buffer), count,
                                                     PyBUF_WRITE));
        callWithView(view.get(), "pread", [&]() {
          return PyObject_CallFunction(fn.get(), "OOKI", handle.get(), view.get(),
                                       static_cast<unsigned long long>(offset), flags);
        });
      }
    });
  }).then([context](Outcome outcome) mutable {
    outcome.fill(context.getResults().initStatus());
  });
}

kj::Promise<void> HandleServer::pwrite(PwriteContext context) {
  auto params = context.getParams();
  const uint8_t* bytes;
  size_t size;
  if (params.hasShared()) {
    auto shared = params.getShared();
    size = shared.getLength();
    bytes = sharedRange(shared, shared.getLength());
  } else {
    auto data = params.getData();  // read once: each get spends traversal budget
    bytes = data.begin();
    size = data.size();
  }
  uint64_t offset = params.getOffset();
  uint32_t flags = params.getFlags();
  return onPool<Outcome>([this, bytes, size, offset, flags]() {
    return call("pwrite", [&]() {
      PyRef fn = services.script.lookup("pwrite");
      if (!fn) throw ScriptError{"pwrite not implemented", true};
      if (services.script.apiVersion() == 1) {
        // API 1 scripts got a bytearray in-process: a private, writable copy.
        PyRef buffer = checked(PyByteArray_FromStringAndSize(
            reinterpret_cast<const char*>(bytes), static_cast<Py_ssize_t>(size)));
        checked(PyObject_CallFunction(fn.get(), "OOK", handle.get(), buffer.get(),
                                      static_cast<unsigned long long>(offset)));
      } else {
        PyRef view = checked(PyMemoryView_FromMemory(
            reinterpret_cast<char*>(const_cast<uint8_t*>(bytes)), static_cast<Py_ssize_t>(size),
            PyBUF_READ));
        callWithView(view.get(), "pwrite", [&]() {
          return PyObject_CallFunction(fn.get(), "OOKI", handle.get(), view.get(),
                                       static_cast<unsigned long long>(offset), flags);
        });
      }
    });
  }).then([context](Outcome outcome) mutable {
    outcome.fill(context.getResults().initStatus());
  });
}

kj::Promise<void> HandleServer::flush(FlushContext context) {
  uint32_t flags = context.getParams().getFlags();
  return onPool<Outcome>([this, flags]() {
    return call("flush", [&]() {
      PyRef fn = services.script.lookup("flush");
      if (!fn) throw ScriptError{"flush not implemented", true};
      if (services.script.apiVersion() == 1) {
        checked(PyObject_CallFunctionObjArgs(fn.get(), handle.get(), nullptr));
      } else {
        checked(PyObject_CallFunction(fn.get(), "OI", handle.get(), flags));
      }
    });
  }).then([context](Outcome outcome) mutable {
    outcome.fill(context.getResults().initStatus());
  });
}

kj::Promise<void> HandleServer::trim(TrimContext context) {
  auto params = context.getParams();
  uint32_t count = params.getCount();
  uint64_t offset = params.getOffset();
  uint32_t flags = params.getFlags();
  return onPool<Outcome>([this, count, offset, flags]() {
    return call("trim", [&]() {
      PyRef fn = services.script.lookup("trim");
      if (!fn) throw ScriptError{"trim not implemented", true};
      auto at = static_cast<unsigned long long>(offset);
      if (services.script.apiVersion() == 1) {
        checked(PyObject_CallFunction(fn.get(), "OIK", handle.get(), count, at));
      } else {
        checked(PyObject_CallFunction(fn.get(), "OIKI", handle.get(), count, at, flags));
      }
    });
  }).then([context](Outcome outcome) mutable {
    outcome.fill(context.getResults().initStatus());
  });
}

kj::Promise<void> HandleServer::zero(ZeroContext context) {
  auto params = context.getParams();
  uint32_t count = params.getCount();
  uint64_t offset = params.getOffset();
  uint32_t flags = params.getFlags();
  return onPool<Outcome>([this, count, offset, flags]() {
    bool absent = false;
    Outcome outcome = call("zero", [&]() {
      PyRef fn = services.script.lookup("zero");
      if (!fn) {
        absent = true;
        return;
      }
      auto at = static_cast<unsigned long long>(offset);
      if (services.script.apiVersion() == 1) {
        PyObject* mayTrim = (flags & 1) ? Py_True : Py_False;  // NBDKIT_FLAG_MAY_TRIM
        checked(PyObject_CallFunction(fn.get(), "OIKO", handle.get(), count, at, mayTrim));
      } else {
        checked(PyObject_CallFunction(fn.get(), "OIKI", handle.get(), count, at, flags));
      }
    });
    // set_error(EOPNOTSUPP), raised or not, asks nbdkit to fall back to writing zeroes:
    // no error message then, as in-process.
    if (absent || outcome.requestedError == EOPNOTSUPP || outcome.requestedError == ENOTSUP) {
      services.host.debug(absent ? "plugin lacks zero, falling back to pwrite"
                                 : "zero requested falling back to pwrite");
      outcome.error = absent ? EOPNOTSUPP : outcome.requestedError;
      outcome.message.clear();
    }
    return outcome;
  }).then([context](Outcome outcome) mutable {
    outcome.fill(context.getResults().initStatus());
  });
}

kj::Promise<void> HandleServer::cache(CacheContext context) {
  auto params = context.getParams();
  uint32_t count = params.getCount();
  uint64_t offset = params.getOffset();
  uint32_t flags = params.getFlags();
  return onPool<Outcome>([this, count, offset, flags]() {
    return call("cache", [&]() {
      PyRef fn = services.script.lookup("cache");
      if (!fn) throw ScriptError{"cache not implemented", true};
      checked(PyObject_CallFunction(fn.get(), "OIKI", handle.get(), count,
                                    static_cast<unsigned long long>(offset), flags));
    });
  }).then([context](Outcome outcome) mutable {
    outcome.fill(context.getResults().initStatus());
  });
}

kj::Promise<void> HandleServer::extents(ExtentsContext context) {
  auto params = context.getParams();
  uint32_t count = params.getCount();
  uint64_t offset = params.getOffset();
  uint32_t flags = params.getFlags();
  struct Result { Outcome outcome; std::vector<ExtentValue> extents; };
  return onPool<Result>([this, count, offset, flags]() {
    Result result;
    result.outcome = call("extents", [&]() {
      PyRef fn = services.script.lookup("extents");
      if (!fn) throw ScriptError{"extents not implemented", true};
      PyRef list = checked(PyObject_CallFunction(fn.get(), "OIKI", handle.get(), count,
                                                 static_cast<unsigned long long>(offset),
                                                 flags));
      result.extents = toExtents(list.get(), "extents");
      checkExtents(result.extents, offset, count, "extents");
    });
    return result;
  }).then([context](Result result) mutable {
    auto results = context.getResults();
    result.outcome.fill(results.initStatus());
    if (!result.outcome.ok()) return;
    auto list = results.initExtents(result.extents.size());
    for (size_t i = 0; i < result.extents.size(); ++i) {
      list[i].setOffset(result.extents[i].offset);
      list[i].setLength(result.extents[i].length);
      list[i].setType(result.extents[i].type);
    }
  });
}

}  // namespace pyworker
