// The worker's RPC servers in-process: Worker served over a kj socketpair, a test Host
// recording what the script sends, and tests/scripts/worker-rpc.py as the script.

#include "host-link.h"
#include "nbdkit-module.h"
#include "python-executor.h"
#include "script.h"
#include "worker-server.h"

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <optional>

namespace pyworker {
namespace {

const std::string SCRIPT = WORKER_TEST_SCRIPTS "/worker-rpc.py";

struct Log {
  std::vector<std::string> debugs;
  std::vector<std::string> errors;
  int shutdowns = 0;

  ptrdiff_t debugIndex(const std::string& message) const {
    auto it = std::find(debugs.begin(), debugs.end(), message);
    return it == debugs.end() ? -1 : it - debugs.begin();
  }
};

class TestHost final: public rpc::Host::Server {
public:
  explicit TestHost(Log& log): log(log) {}

protected:
  kj::Promise<void> debug(DebugContext context) override {
    log.debugs.push_back(context.getParams().getMessage());
    return kj::READY_NOW;
  }
  kj::Promise<void> error(ErrorContext context) override {
    log.errors.push_back(context.getParams().getMessage());
    return kj::READY_NOW;
  }
  kj::Promise<void> shutdown(ShutdownContext) override {
    ++log.shutdowns;
    return kj::READY_NOW;
  }

private:
  Log& log;
};

class NoErrors final: public kj::TaskSet::ErrorHandler {
public:
  void taskFailed(kj::Exception&& exception) override { ADD_FAILURE() << exception.getDescription().cStr(); }
};

struct World {
  kj::AsyncIoContext io = kj::setupAsyncIo();
  Log log;
  HostLink host{kj::getCurrentThreadExecutor()};
  PythonExecutor executor;
  Script script{host};
  NoErrors noErrors;
  kj::TaskSet closes{noErrors};
  kj::TwoWayPipe pipe = io.provider->newTwoWayPipe();
  capnp::TwoPartyVatNetwork serverNetwork{*pipe.ends[0], capnp::rpc::twoparty::Side::SERVER};
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> server = capnp::makeRpcServer(
      serverNetwork,
      rpc::Worker::Client(kj::heap<WorkerServer>(Services{script, executor, host, closes, SharedData{}})));
  capnp::TwoPartyClient client{*pipe.ends[1]};
  rpc::Worker::Client worker = client.bootstrap().castAs<rpc::Worker>();
  rpc::Host::Client hostCap = kj::heap<TestHost>(log);

  World() { setNbdkitModuleHost(&host); }
};

std::optional<World> world;

void setContext(rpc::ConnectionContext::Builder context, const char* exportName) {
  context.setExportName(kj::StringPtr(exportName).asBytes());
  context.setHasExportName(true);
}

class WorkerRpc: public ::testing::Test {
protected:
  static void SetUpTestSuite() {
    registerNbdkitModule();
    Py_InitializeEx(0);
    PyEval_SaveThread();  // the pool threads take the GIL
    world.emplace();
    auto request = world->worker.loadRequest();
    request.setScript(SCRIPT);
    request.setHost(world->hostCap);
    auto response = request.send().wait(world->io.waitScope);
    ASSERT_EQ(response.getStatus().getErrno(), 0) << response.getStatus().getMessage().cStr();
    EXPECT_EQ(response.getInfo().getApiVersion(), 2);
    EXPECT_EQ(response.getInfo().getPep384AbiVersion(), 3);
    EXPECT_EQ(response.getInfo().getPythonVersion(), PY_VERSION);
  }

  kj::WaitScope& ws() { return world->io.waitScope; }
  rpc::Worker::Client& worker() { return world->worker; }
  Log& log() { return world->log; }

  rpc::Handle::Client open(const char* exportName) {
    auto request = worker().openRequest();
    request.setReadonly(false);
    setContext(request.initContext(), exportName);
    auto response = request.send().wait(ws());
    EXPECT_EQ(response.getStatus().getErrno(), 0) << response.getStatus().getMessage().cStr();
    return response.getHandle();
  }

  int32_t query(rpc::Handle::Client& handle, rpc::Query which) {
    auto request = handle.queryRequest();
    request.setQuery(which);
    auto response = request.send().wait(ws());
    EXPECT_EQ(response.getStatus().getErrno(), 0);
    return response.getValue();
  }
};

TEST_F(WorkerRpc, LoadTalksToTheHost) {
  EXPECT_GE(log().debugIndex("module requested API_VERSION 2"), 0);
}

TEST_F(WorkerRpc, Config) {
  auto good = worker().configRequest();
  good.setKey("size");
  good.setValue("1M");
  EXPECT_EQ(good.send().wait(ws()).getStatus().getErrno(), 0);

  auto bad = worker().configRequest();
  bad.setKey("fail");
  bad.setValue("now");
  auto response = bad.send().wait(ws());
  EXPECT_EQ(response.getStatus().getErrno(), EIO);
  // nbdkit 1.32's format: traceback.format_exception() lines joined with a space.
  std::string message = response.getStatus().getMessage();
  EXPECT_EQ(message.rfind(SCRIPT + ": config: error: Traceback (most recent call last):\n"
                          "   File \"" + SCRIPT + "\", line ", 0), 0u) << message;
  EXPECT_NE(message.find(", in config\n"), std::string::npos) << message;
  EXPECT_TRUE(message.ends_with("\n ValueError: config refused now\n")) << message;
}

TEST_F(WorkerRpc, ProcessWideCallbacks) {
  auto model = worker().threadModelRequest().send().wait(ws());
  EXPECT_EQ(model.getStatus().getErrno(), 0);
  EXPECT_EQ(model.getModel(), 3);  // PARALLEL

  EXPECT_EQ(worker().configCompleteRequest().send().wait(ws()).getStatus().getErrno(), 0);
  EXPECT_EQ(worker().getReadyRequest().send().wait(ws()).getStatus().getErrno(), 0);

  auto dump = worker().dumpPluginRequest().send().wait(ws());
  EXPECT_EQ(dump.getStatus().getErrno(), 0);
  EXPECT_EQ(dump.getText(), "rpc_fixture=yes\n");
}

TEST_F(WorkerRpc, Exports) {
  auto list = worker().listExportsRequest();
  list.initContext();
  auto exports = list.send().wait(ws());
  EXPECT_EQ(exports.getStatus().getErrno(), 0);
  EXPECT_FALSE(exports.getUseDefault());
  ASSERT_EQ(exports.getExports().size(), 2u);
  EXPECT_EQ(exports.getExports()[0].getName(), "a");
  EXPECT_FALSE(exports.getExports()[0].getHasDescription());
  EXPECT_EQ(exports.getExports()[1].getName(), "b");
  EXPECT_EQ(exports.getExports()[1].getDescription(), "desc of b");
  EXPECT_TRUE(exports.getExports()[1].getHasDescription());

  auto name = worker().defaultExportRequest();
  name.initContext();
  auto answer = name.send().wait(ws());
  EXPECT_EQ(answer.getStatus().getErrno(), 0);
  EXPECT_EQ(answer.getName(), "a");
}

TEST_F(WorkerRpc, OpenAndQueries) {
  auto handle = open("q");
  // E-order: the script's debug() reaches the host before open's reply.
  EXPECT_GE(log().debugIndex("open export=q readonly=False"), 0);

  auto size = handle.getSizeRequest().send().wait(ws());
  EXPECT_EQ(size.getSize(), 1024 * 1024);
  auto blocks = handle.blockSizeRequest().send().wait(ws());
  EXPECT_EQ(blocks.getMinimum(), 1u);
  EXPECT_EQ(blocks.getPreferred(), 4096u);
  EXPECT_EQ(blocks.getMaximum(), 1024u * 1024);
  auto description = handle.exportDescriptionRequest().send().wait(ws());
  EXPECT_TRUE(description.getHasDescription());
  EXPECT_EQ(description.getDescription(), "the export q");

  EXPECT_EQ(query(handle, rpc::Query::CAN_WRITE), 1);       // pwrite defined
  EXPECT_EQ(query(handle, rpc::Query::CAN_FLUSH), 0);       // no flush
  EXPECT_EQ(query(handle, rpc::Query::IS_ROTATIONAL), 1);   // returns True
  EXPECT_EQ(query(handle, rpc::Query::CAN_TRIM), 0);
  EXPECT_EQ(query(handle, rpc::Query::CAN_ZERO), 1);
  EXPECT_EQ(query(handle, rpc::Query::CAN_FAST_ZERO), 0);   // zero defined
  EXPECT_EQ(query(handle, rpc::Query::CAN_FUA), 0);         // no flush: FUA_NONE
  EXPECT_EQ(query(handle, rpc::Query::CAN_CACHE), 0);
  EXPECT_EQ(query(handle, rpc::Query::CAN_EXTENTS), 1);
  EXPECT_EQ(query(handle, rpc::Query::CAN_MULTI_CONN), 0);  // returns 1, not True
}

TEST_F(WorkerRpc, ReadWrite) {
  auto handle = open("rw");
  auto write = handle.pwriteRequest();
  write.setData(kj::StringPtr("hello, world").asBytes());
  write.setOffset(100);
  write.setFlags(2);  // FUA
  EXPECT_EQ(write.send().wait(ws()).getStatus().getErrno(), 0);
  EXPECT_GE(log().debugIndex("fua write"), 0);

  auto read = handle.preadRequest();
  read.setCount(16);
  read.setOffset(98);
  auto data = read.send().wait(ws());
  EXPECT_EQ(data.getStatus().getErrno(), 0);
  auto bytes = data.getData();
  EXPECT_EQ(std::string(bytes.asChars().begin(), bytes.size()),
            std::string("\0\0hello, world\0\0", 16));
}

TEST_F(WorkerRpc, Errors) {
  auto handle = open("errors");
  auto read = [&](uint64_t offset) {
    auto request = handle.preadRequest();
    request.setCount(512);
    request.setOffset(offset);
    return request.send().wait(ws());
  };

  auto withErrno = read(4096);
  EXPECT_EQ(withErrno.getStatus().getErrno(), ENOSPC);
  std::string message = withErrno.getStatus().getMessage();
  EXPECT_EQ(message.rfind(SCRIPT + ": pread: error: Traceback (most recent call last):\n", 0),
            0u) << message;
  EXPECT_NE(message.find(", in fail_in_helper\n"), std::string::npos) << message;
  EXPECT_TRUE(message.ends_with("\n RuntimeError: no space here\n")) << message;

  auto plain = read(8192);
  EXPECT_EQ(plain.getStatus().getErrno(), EIO);
  EXPECT_TRUE(std::string(plain.getStatus().getMessage()).ends_with(" ValueError: plain failure\n"));

  auto setErrorOnly = read(12288);  // set_error() then a normal return: success
  EXPECT_EQ(setErrorOnly.getStatus().getErrno(), 0);
  EXPECT_EQ(setErrorOnly.getStatus().getMessage(), "");

  auto disconnect = read(20480);
  EXPECT_EQ(disconnect.getStatus().getErrno(), 0);
  EXPECT_EQ(disconnect.getStatus().getDisconnect(), rpc::Disconnect::FORCE);
  EXPECT_EQ(read(0).getStatus().getDisconnect(), rpc::Disconnect::NONE);

  auto kept = read(24576);  // the script keeps a slice of its buffer
  EXPECT_EQ(kept.getStatus().getErrno(), EIO);
  EXPECT_EQ(kept.getStatus().getMessage(),
            SCRIPT + ": pread: error: pread kept a reference to its buffer after returning; "
                     "copy the data instead");

  // zero with set_error(EOPNOTSUPP): nbdkit falls back to writing zeroes, no error message.
  auto zero = [&](uint32_t flags) {
    auto request = handle.zeroRequest();
    request.setCount(512);
    request.setOffset(0);
    request.setFlags(flags);
    return request.send().wait(ws());
  };
  auto fallback = zero(0);
  EXPECT_EQ(fallback.getStatus().getErrno(), EOPNOTSUPP);
  EXPECT_EQ(fallback.getStatus().getMessage(), "");
  EXPECT_EQ(zero(1).getStatus().getErrno(), 0);  // MAY_TRIM

  auto extents = [&](uint64_t offset) {
    auto request = handle.extentsRequest();
    request.setCount(8192);
    request.setOffset(offset);
    return request.send().wait(ws());
  };
  auto good = extents(0);
  EXPECT_EQ(good.getStatus().getErrno(), 0);
  ASSERT_EQ(good.getExtents().size(), 2u);
  EXPECT_EQ(good.getExtents()[1].getOffset(), 4096u);
  EXPECT_EQ(good.getExtents()[1].getType(), 3u);
  auto bad = extents(8192);
  EXPECT_EQ(bad.getStatus().getErrno(), EIO);
  EXPECT_EQ(bad.getStatus().getMessage(),
            SCRIPT + ": extents: error: extents returned 'str' as the type of item 0, "
                     "expected int");
}

TEST_F(WorkerRpc, CallsRunInParallel) {
  auto handle = open("parallel");
  auto start = std::chrono::steady_clock::now();
  kj::Vector<kj::Promise<void>> reads;
  for (int i = 0; i < 8; ++i) {
    auto request = handle.preadRequest();
    request.setCount(512);
    request.setOffset(16384);  // sleeps 1 s
    reads.add(request.send().then([](auto response) {
      EXPECT_EQ(response.getStatus().getErrno(), 0);
    }));
  }
  kj::joinPromises(reads.releaseAsArray()).wait(ws());
  auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_LT(elapsed, std::chrono::milliseconds(2500));
}

// Runs last (gtest keeps file order): close of every handle, then cleanup.
TEST_F(WorkerRpc, ZzCloseAfterInFlightCallsThenCleanup) {
  {
    auto handle = open("slow");
    auto request = handle.preadRequest();
    request.setCount(512);
    request.setOffset(16384);
    auto pending = request.send();
    handle = nullptr;  // released while the read sleeps: close() must wait for it
    EXPECT_EQ(pending.wait(ws()).getStatus().getErrno(), 0);
  }
  open("close-raises");  // released at once

  worker().cleanupRequest().send().wait(ws());
  auto slowDone = log().debugIndex("slow pread done");
  auto closed = log().debugIndex("close slow");
  auto cleanup = log().debugIndex("cleanup");
  ASSERT_GE(slowDone, 0);
  ASSERT_GE(closed, 0);
  ASSERT_GE(cleanup, 0);
  EXPECT_LT(slowDone, closed);
  EXPECT_GE(log().debugIndex("close close-raises"), 0);
  EXPECT_LT(log().debugIndex("close close-raises"), cleanup);
  EXPECT_LT(closed, cleanup);
  bool closeError = std::any_of(log().errors.begin(), log().errors.end(), [](auto& e) {
    return e.rfind(SCRIPT + ": close: error: Traceback", 0) == 0 &&
           e.ends_with(" RuntimeError: close failed\n");
  });
  EXPECT_TRUE(closeError);
}

}  // namespace
}  // namespace pyworker
