// The worker's RPC servers in-process: Worker served over a kj socketpair, its lanes (the data
// path) over real socketpairs, a test Host recording what the script sends, and
// tests/scripts/worker-rpc.py as the script.

#include "host-link.h"
#include "lane-offers.h"
#include "lane-server.h"
#include "lane-stream.h"
#include "nbdkit-module.h"
#include "open-handle.h"
#include "python-executor.h"
#include "script.h"
#include "worker-server.h"

#include <capnp/rpc-twoparty.h>
#include <capnp/serialize.h>
#include <kj/async-io.h>

#include <string.h>
#include <sys/socket.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <memory>
#include <optional>
#include <thread>

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

struct World;
extern std::optional<World> world;

struct World {
  kj::AsyncIoContext io = kj::setupAsyncIo();
  Log log;
  HostLink host{kj::getCurrentThreadExecutor()};
  PythonExecutor executor;
  Script script{host};
  HandleTable handles;
  kj::AutoCloseFd laneOffers;  // our end; the LaneServer has the other
  std::optional<LaneServer> lanes;
  kj::TwoWayPipe pipe = io.provider->newTwoWayPipe();
  capnp::TwoPartyVatNetwork serverNetwork{*pipe.ends[0], capnp::rpc::twoparty::Side::SERVER};
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> server = capnp::makeRpcServer(
      serverNetwork, rpc::Worker::Client(kj::heap<WorkerServer>(
                         Services{script, executor, host, handles})));
  capnp::TwoPartyClient client{*pipe.ends[1]};
  rpc::Worker::Client worker = client.bootstrap().castAs<rpc::Worker>();
  rpc::Host::Client hostCap = kj::heap<TestHost>(log);

  World() {
    setNbdkitModuleHost(&host);
    int fds[2];
    KJ_SYSCALL(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds));
    laneOffers = kj::AutoCloseFd(fds[0]);
    lanes.emplace(kj::AutoCloseFd(fds[1]), script, host, handles, SharedData{});
  }
};

class LaneReplyCopy {
  // A LaneReply read off a lane, kept after the lane is gone.
public:
  explicit LaneReplyCopy(kj::ArrayPtr<const capnp::word> words)
      : words_(kj::heapArray(words)), reader_(std::make_unique<capnp::FlatArrayMessageReader>(
                                          words_.asPtr())) {}
  rpc::LaneReply::Reader get() { return reader_->getRoot<rpc::LaneReply>(); }

private:
  kj::Array<capnp::word> words_;
  std::unique_ptr<capnp::FlatArrayMessageReader> reader_;
};

struct PendingLaneCall {
  // One LaneCall on a lane of its own, made on a thread of its own (as an nbdkit thread
  // would), while the test's thread runs the event loop that the worker's Host calls need.
  kj::Promise<void> done;
  std::unique_ptr<std::optional<LaneReplyCopy>> reply;
  std::thread thread;

  LaneReplyCopy wait(kj::WaitScope& ws) {
    KJ_DEFER(thread.join());
    done.wait(ws);
    return kj::mv(**reply);
  }
};

std::optional<World> world;

PendingLaneCall startLaneCall(kj::Function<void(rpc::LaneCall::Builder)> build) {
  auto paf = kj::newPromiseAndCrossThreadFulfiller<void>();
  auto reply = std::make_unique<std::optional<LaneReplyCopy>>();
  auto* into = reply.get();
  struct Job {
    // Held by shared_ptr: std::thread wants a lambda whose destructor cannot throw.
    kj::Function<void(rpc::LaneCall::Builder)> build;
    kj::Own<kj::CrossThreadPromiseFulfiller<void>> fulfiller;
  };
  auto job = std::make_shared<Job>(Job{kj::mv(build), kj::mv(paf.fulfiller)});
  std::thread thread([job, into]() {
    KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() {
      LaneStream lane(offerNewLane(world->laneOffers.get()));
      capnp::MallocMessageBuilder message;
      job->build(message.initRoot<rpc::LaneCall>());
      lane.write(message);
      into->emplace(lane.read(std::nullopt, std::chrono::microseconds(0)));
    })) {
      job->fulfiller->reject(kj::mv(*exception));
      return;
    }
    job->fulfiller->fulfill();
  });
  return {kj::mv(paf.promise), kj::mv(reply), kj::mv(thread)};
}

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

  LaneReplyCopy openCall(const char* exportName) {
    auto reply = laneCall([&](rpc::LaneCall::Builder call) {
      call.setOpen();
      call.setReadonly(false);
      setContext(call.initContext(), exportName);
    });
    EXPECT_EQ(reply.get().getStatus().getErrno(), 0)
        << reply.get().getStatus().getMessage().cStr();
    EXPECT_GT(reply.get().getHandleId(), 0u);
    return reply;
  }

  uint64_t open(const char* exportName) { return openCall(exportName).get().getHandleId(); }

  LaneReplyCopy laneCall(kj::Function<void(rpc::LaneCall::Builder)> build) {
    return startLaneCall(kj::mv(build)).wait(ws());
  }

  static auto preadCall(uint64_t id, uint32_t count, uint64_t offset) {
    return [=](rpc::LaneCall::Builder call) {
      call.setHandle(id);
      call.setCount(count);
      call.setOffset(offset);
      call.setPread();
    };
  }

  int32_t query(uint64_t id, rpc::Query which) {
    auto reply = laneCall([&](rpc::LaneCall::Builder call) {
      call.setHandle(id);
      call.setQuery(which);
    });
    EXPECT_EQ(reply.get().getStatus().getErrno(), 0);
    return reply.get().getValue();
  }

  LaneReplyCopy handleCall(uint64_t id, void (rpc::LaneCall::Builder::*select)(capnp::Void)) {
    return laneCall([&](rpc::LaneCall::Builder call) {
      call.setHandle(id);
      (call.*select)(capnp::VOID);
    });
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
  auto opened = openCall("q");
  auto id = opened.get().getHandleId();
  // What the script asked of nbdkit comes back with open's reply, as with every lane call.
  ASSERT_EQ(opened.get().getHostCalls().size(), 1u);
  EXPECT_EQ(opened.get().getHostCalls()[0].getDebug(), "open export=q readonly=False");

  auto size = handleCall(id, &rpc::LaneCall::Builder::setGetSize);
  EXPECT_EQ(size.get().getSize(), 1024 * 1024);
  auto blocks = handleCall(id, &rpc::LaneCall::Builder::setBlockSize);
  EXPECT_EQ(blocks.get().getMinimum(), 1u);
  EXPECT_EQ(blocks.get().getPreferred(), 4096u);
  EXPECT_EQ(blocks.get().getMaximum(), 1024u * 1024);
  auto description = handleCall(id, &rpc::LaneCall::Builder::setExportDescription);
  EXPECT_TRUE(description.get().getHasDescription());
  EXPECT_EQ(description.get().getDescription(), "the export q");

  EXPECT_EQ(query(id, rpc::Query::CAN_WRITE), 1);       // pwrite defined
  EXPECT_EQ(query(id, rpc::Query::CAN_FLUSH), 0);       // no flush
  EXPECT_EQ(query(id, rpc::Query::IS_ROTATIONAL), 1);   // returns True
  EXPECT_EQ(query(id, rpc::Query::CAN_TRIM), 0);
  EXPECT_EQ(query(id, rpc::Query::CAN_ZERO), 1);
  EXPECT_EQ(query(id, rpc::Query::CAN_FAST_ZERO), 0);   // zero defined
  EXPECT_EQ(query(id, rpc::Query::CAN_FUA), 0);         // no flush: FUA_NONE
  EXPECT_EQ(query(id, rpc::Query::CAN_CACHE), 0);
  EXPECT_EQ(query(id, rpc::Query::CAN_EXTENTS), 1);
  EXPECT_EQ(query(id, rpc::Query::CAN_MULTI_CONN), 0);  // returns 1, not True
}

TEST_F(WorkerRpc, ReadWrite) {
  auto opened = open("rw");
  auto wrote = laneCall([&](rpc::LaneCall::Builder call) {
    call.setHandle(opened);
    call.setData(kj::StringPtr("hello, world").asBytes());
    call.setCount(12);
    call.setOffset(100);
    call.setFlags(2);  // FUA
    call.setPwrite();
  });
  EXPECT_EQ(wrote.get().getStatus().getErrno(), 0);
  // A lane call's Host calls (here nbdkit.debug()) come back with its reply, for the plugin
  // to make on the calling thread, in order.
  ASSERT_EQ(wrote.get().getHostCalls().size(), 1u);
  EXPECT_EQ(wrote.get().getHostCalls()[0].getDebug(), "fua write");
  EXPECT_EQ(log().debugIndex("fua write"), -1);

  auto data = laneCall(preadCall(opened, 16, 98));
  EXPECT_EQ(data.get().getStatus().getErrno(), 0);
  auto bytes = data.get().getData();
  EXPECT_EQ(std::string(bytes.asChars().begin(), bytes.size()),
            std::string("\0\0hello, world\0\0", 16));
}

TEST_F(WorkerRpc, UnknownHandleEndsTheLane) {
  // Only a broken plugin names a handle that is not open: the worker drops that lane.
  auto pending = startLaneCall(preadCall(987654321, 16, 0));
  EXPECT_THROW(pending.wait(ws()), kj::Exception);  // the LaneError CLOSED, carried over
}

TEST_F(WorkerRpc, Errors) {
  auto opened = open("errors");
  auto read = [&](uint64_t offset) { return laneCall(preadCall(opened, 512, offset)); };

  auto withErrno = read(4096);
  EXPECT_EQ(withErrno.get().getStatus().getErrno(), ENOSPC);
  std::string message = withErrno.get().getStatus().getMessage();
  EXPECT_EQ(message.rfind(SCRIPT + ": pread: error: Traceback (most recent call last):\n", 0),
            0u) << message;
  EXPECT_NE(message.find(", in fail_in_helper\n"), std::string::npos) << message;
  EXPECT_TRUE(message.ends_with("\n RuntimeError: no space here\n")) << message;

  auto plain = read(8192);
  EXPECT_EQ(plain.get().getStatus().getErrno(), EIO);
  EXPECT_TRUE(std::string(plain.get().getStatus().getMessage())
                  .ends_with(" ValueError: plain failure\n"));

  auto setErrorOnly = read(12288);  // set_error() then a normal return: success
  EXPECT_EQ(setErrorOnly.get().getStatus().getErrno(), 0);
  EXPECT_EQ(setErrorOnly.get().getStatus().getMessage(), "");

  auto disconnect = read(20480);
  EXPECT_EQ(disconnect.get().getStatus().getErrno(), 0);
  EXPECT_EQ(disconnect.get().getStatus().getDisconnect(), rpc::Disconnect::FORCE);
  EXPECT_EQ(read(0).get().getStatus().getDisconnect(), rpc::Disconnect::NONE);

  auto kept = read(24576);  // the script keeps a slice of its buffer
  EXPECT_EQ(kept.get().getStatus().getErrno(), EIO);
  EXPECT_EQ(kept.get().getStatus().getMessage(),
            SCRIPT + ": pread: error: pread kept a reference to its buffer after returning; "
                     "copy the data instead");

  // Host calls beyond what a reply carries go to the Host, in order after the kept ones.
  auto chatty = read(28672);
  EXPECT_EQ(chatty.get().getStatus().getErrno(), 0);
  ASSERT_EQ(chatty.get().getHostCalls().size(), 1u);
  EXPECT_EQ(chatty.get().getHostCalls()[0].getDebug(), std::string(600 * 1024, 'a'));
  auto wait = world->io.provider->getTimer().afterDelay(200 * kj::MILLISECONDS);
  wait.wait(ws());  // the Host calls travel through the event loop
  auto b = log().debugIndex(std::string(600 * 1024, 'b'));
  auto c = log().debugIndex("c");
  EXPECT_GE(b, 0);
  EXPECT_GT(c, b);

  // zero with set_error(EOPNOTSUPP): nbdkit falls back to writing zeroes, no error message.
  auto zero = [&](uint32_t flags) {
    return laneCall([&](rpc::LaneCall::Builder call) {
      call.setHandle(opened);
      call.setCount(512);
      call.setFlags(flags);
      call.setZero();
    });
  };
  auto fallback = zero(0);
  EXPECT_EQ(fallback.get().getStatus().getErrno(), EOPNOTSUPP);
  EXPECT_EQ(fallback.get().getStatus().getMessage(), "");
  EXPECT_EQ(zero(1).get().getStatus().getErrno(), 0);  // MAY_TRIM

  auto extents = [&](uint64_t offset) {
    return laneCall([&](rpc::LaneCall::Builder call) {
      call.setHandle(opened);
      call.setCount(8192);
      call.setOffset(offset);
      call.setExtents();
    });
  };
  auto good = extents(0);
  EXPECT_EQ(good.get().getStatus().getErrno(), 0);
  ASSERT_EQ(good.get().getExtents().size(), 2u);
  EXPECT_EQ(good.get().getExtents()[1].getOffset(), 4096u);
  EXPECT_EQ(good.get().getExtents()[1].getType(), 3u);
  auto bad = extents(8192);
  EXPECT_EQ(bad.get().getStatus().getErrno(), EIO);
  EXPECT_EQ(bad.get().getStatus().getMessage(),
            SCRIPT + ": PyLong: error: an integer is required");  // nbdkit python's words
}

TEST_F(WorkerRpc, CallsRunInParallel) {
  // Eight lanes, eight worker threads: the script's sleeps overlap.
  auto opened = open("parallel");
  auto start = std::chrono::steady_clock::now();
  std::vector<PendingLaneCall> reads;
  for (int i = 0; i < 8; ++i) reads.push_back(startLaneCall(preadCall(opened, 512, 16384)));
  for (auto& read : reads) EXPECT_EQ(read.wait(ws()).get().getStatus().getErrno(), 0);
  auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_LT(elapsed, std::chrono::milliseconds(2500));
}

TEST_F(WorkerRpc, OpenFailureGivesNoHandle) {
  auto reply = laneCall([&](rpc::LaneCall::Builder call) {
    call.setOpen();
    call.setReadonly(true);
    setContext(call.initContext(), "refuse");
  });
  EXPECT_EQ(reply.get().getStatus().getErrno(), EACCES);
  EXPECT_EQ(reply.get().getHandleId(), 0u);
}

// Runs last (gtest keeps file order): close on a lane, then cleanup closing what is left.
TEST_F(WorkerRpc, ZzCloseOnALaneThenCleanupClosesWhatIsLeft) {
  // The plugin's close: a lane call, after which the handle is gone.
  auto closed = open("closed");
  auto reply = handleCall(closed, &rpc::LaneCall::Builder::setClose);
  EXPECT_EQ(reply.get().getStatus().getErrno(), 0);
  ASSERT_EQ(reply.get().getHostCalls().size(), 1u);
  EXPECT_EQ(reply.get().getHostCalls()[0].getDebug(), "close closed after 8 slow reads");
  EXPECT_THROW(startLaneCall(preadCall(closed, 16, 0)).wait(ws()), kj::Exception);

  // Handles a plugin left open (it could not close them): cleanup closes them first, the one
  // with a call in flight once that call has returned.
  auto slow = open("slow");
  auto pending = startLaneCall(preadCall(slow, 512, 16384));
  world->io.provider->getTimer().afterDelay(300 * kj::MILLISECONDS).wait(ws());
  open("close-raises");
  auto cleanupDone = worker().cleanupRequest().send();
  auto read = pending.wait(ws());
  EXPECT_EQ(read.get().getStatus().getErrno(), 0);
  ASSERT_EQ(read.get().getHostCalls().size(), 1u);
  EXPECT_EQ(read.get().getHostCalls()[0].getDebug(), "slow pread done");
  cleanupDone.wait(ws());
  // close() ran only once the read in flight had finished (8 slow reads before: the parallel
  // test's, and this one); both before cleanup().
  auto closedSlow = log().debugIndex("close slow after 9 slow reads");
  auto cleanup = log().debugIndex("cleanup");
  ASSERT_GE(closedSlow, 0) << kj::strArray(log().debugs, "\n").cStr();
  ASSERT_GE(cleanup, 0);
  auto raised = log().debugIndex("close close-raises after 9 slow reads");
  EXPECT_GE(raised, 0);
  EXPECT_LT(raised, cleanup);
  EXPECT_LT(closedSlow, cleanup);
  bool closeError = std::any_of(log().errors.begin(), log().errors.end(), [](auto& e) {
    return e.rfind(SCRIPT + ": close: error: Traceback", 0) == 0 &&
           e.ends_with(" RuntimeError: close failed\n");
  });
  EXPECT_TRUE(closeError);
}

}  // namespace
}  // namespace pyworker
