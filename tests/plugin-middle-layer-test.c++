// The plugin's middle layer against a real worker process (the built worker running small
// scripts from tests/scripts, which play a worker that blocks, dies or is slow on cue), with
// nbdkit itself replaced by the stubs below: a connection whose worker dies mid-call (lost,
// or re-bound and answered by the new worker, which is the one to blame for its reply), and a
// replacement that never finishes config (abandoned at timeout=, waiting callers released).

#include <gtest/gtest.h>

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "bring-up.h"
#include "connection.h"
#include "guard.h"
#include "handle-opening.h"
#include "supervisor.h"
#include "worker-instance.h"

#ifndef WORKER_PATH
#error "the build must define WORKER_PATH and WORKER_TEST_SCRIPTS"
#endif

// --- nbdkit, as far as the middle layer uses it: messages are kept for the tests to read ---

namespace {
std::mutex logMutex;
std::vector<std::string> errors;

std::string logged() {
  std::lock_guard<std::mutex> lock(logMutex);
  std::string all;
  for (auto& e : errors) all += e + "\n";
  return all;
}
}  // namespace

void nbdkit_error(const char* format, ...) {
  char text[4096];
  va_list args;
  va_start(args, format);
  vsnprintf(text, sizeof(text), format, args);
  va_end(args);
  std::lock_guard<std::mutex> lock(logMutex);
  errors.push_back(text);
}
void nbdkit_debug(const char*, ...) {}
void nbdkit_set_error(int) {}
void nbdkit_shutdown(void) {}
int nbdkit_nanosleep(unsigned sec, unsigned nsec) {
  std::this_thread::sleep_for(std::chrono::seconds(sec) + std::chrono::nanoseconds(nsec));
  return 0;
}
const char* nbdkit_export_name(void) { return nullptr; }
int nbdkit_is_tls(void) { return 0; }
int nbdkit_peer_name(struct sockaddr*, socklen_t*) { return -1; }
int64_t nbdkit_peer_pid(void) { return -1; }
int64_t nbdkit_peer_uid(void) { return -1; }
int64_t nbdkit_peer_gid(void) { return -1; }

namespace pyworker {
namespace {

using namespace std::chrono_literals;

std::string scratchFile(const char* name) {
  return testing::TempDir() + "/pyworker-middle-layer-" + std::to_string(getpid()) + "-" + name;
}

struct Disk {
  // A file for tests/scripts/recover.py to serve, and its knobs.
  std::string path = scratchFile("disk");
  explicit Disk(size_t size = 4 * 1024 * 1024) {
    std::ofstream f(path, std::ios::binary);
    std::string block(size, '\0');
    for (size_t i = 0; i < size; ++i) block[i] = static_cast<char>(i * 7);
    f << block;
  }
  ~Disk() {
    unlink(path.c_str());
    unlink((path + ".hold").c_str());
  }
  void hold(bool on) {
    if (on) {
      std::ofstream(path + ".hold");
    } else {
      unlink((path + ".hold").c_str());
    }
  }
};

WorkerSetup setupFor(const char* script, std::vector<std::pair<std::string, std::string>> keys) {
  WorkerSetup setup;
  setup.workerPath = WORKER_PATH;
  setup.script = std::string(WORKER_TEST_SCRIPTS) + "/" + script;
  setup.scriptConfig = kj::mv(keys);
  return setup;
}

std::shared_ptr<WorkerInstance> startWorker(const WorkerSetup& setup) {
  // A serving worker taken through every bring-up step, as Supervisor does for a replacement.
  auto process = std::make_unique<WorkerProcess>(setup.workerPath, "middle-layer-test", false,
                                                 std::nullopt);
  auto socket = process->takeSockets().serving;
  auto instance = std::make_shared<WorkerInstance>(0, kj::mv(process), kj::mv(socket), 10000ms);
  loadScript(*instance, setup, Start::LATER);
  configComplete(*instance);
  threadModel(*instance);
  getReady(*instance);
  afterFork(*instance, true);
  instance->beginServing(std::nullopt);
  return instance;
}

std::string read512(Connection& connection, std::shared_ptr<WorkerInstance>* answeredBy) {
  std::string data;
  auto from = connection.laneCall(
      [](rpc::LaneCall::Builder call, const std::shared_ptr<WorkerInstance>&) {
        call.setCount(512);
        call.setOffset(512);
        call.setPread();
      },
      [&](rpc::LaneReply::Reader reply) {
        EXPECT_EQ(reply.getStatus().getErrno(), 0);
        auto bytes = reply.getData();
        data.assign(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
      });
  if (answeredBy) *answeredBy = from;
  return data;
}

Connection::Binding open(const std::shared_ptr<WorkerInstance>& instance) {
  ConnectionContext context;
  context.hasExportName = true;  // the default export, as a client that named none
  auto opened = openHandle(instance, false, context);
  EXPECT_EQ(opened.outcome.error, 0) << opened.outcome.message;
  return opened.binding;
}

void killAndWait(WorkerInstance& instance) {
  instance.process().kill();
  ASSERT_TRUE(instance.process().hasExited(5 * kj::SECONDS));
}

TEST(PluginMiddleLayer, AWorkerThatDiesMidCallIsLostWithItsPidAndHow) {
  Disk disk;
  auto setup = setupFor("recover.py", {{"file", disk.path}});
  auto a = startWorker(setup);
  Connection connection(false, {}, open(a), {});
  std::string expected = read512(connection, nullptr);
  ASSERT_EQ(expected.size(), 512u);

  disk.hold(true);  // the next read stays in the worker until the hold file goes
  auto call = std::async(std::launch::async, [&] { read512(connection, nullptr); });
  std::this_thread::sleep_for(300ms);
  killAndWait(*a);
  try {
    call.get();
    FAIL() << "a call on a dead worker succeeded";
  } catch (const WorkerLost& lost) {
    EXPECT_EQ(lost.pid, a->pid());
    EXPECT_EQ(lost.why, "killed by SIGKILL");
    EXPECT_TRUE(lost.whileAnswering);
    EXPECT_TRUE(lost.killedFromOutside);
  }
  // The next call finds the worker lost before it is sent.
  try {
    read512(connection, nullptr);
    FAIL() << "a call on a dead worker succeeded";
  } catch (const WorkerLost& lost) {
    EXPECT_FALSE(lost.whileAnswering);
  }
  EXPECT_TRUE(a->isLost());
}

TEST(PluginMiddleLayer, ReopenedConnectionIsAnsweredAndBlamedByTheNewWorker) {
  Disk disk;
  auto setup = setupFor("recover.py", {{"file", disk.path}});
  auto a = startWorker(setup);
  auto b = startWorker(setup);
  int reopens = 0;
  unsigned inFlightAtReopen = 0;
  pid_t lostPid = 0;
  Connection connection(false, {}, open(a),
                        [&](const Connection&, const Connection::Binding& lost,
                            const WorkerLost& why, unsigned inFlight) {
                          reopens++;
                          inFlightAtReopen = inFlight;
                          lostPid = why.pid;
                          EXPECT_EQ(lost.instance, a);
                          return open(b);
                        });
  std::shared_ptr<WorkerInstance> answeredBy;
  std::string expected = read512(connection, &answeredBy);
  EXPECT_EQ(answeredBy, a);

  disk.hold(true);
  std::vector<std::future<std::string>> calls;
  for (int i = 0; i < 3; ++i) {
    calls.push_back(std::async(std::launch::async, [&] { return read512(connection, nullptr); }));
  }
  std::this_thread::sleep_for(300ms);
  killAndWait(*a);
  disk.hold(false);
  for (auto& c : calls) EXPECT_EQ(c.get(), expected);  // sent again, answered by b
  EXPECT_EQ(reopens, 1) << "three threads found the worker dead: one re-open";
  EXPECT_EQ(inFlightAtReopen, 3u);
  EXPECT_EQ(lostPid, a->pid());

  EXPECT_EQ(read512(connection, &answeredBy), expected);
  EXPECT_EQ(answeredBy, b) << "a bad reply now would be b's, not the dead a's";
  answeredBy->reject();  // what verify() does with a reply that fails its checks
  EXPECT_TRUE(b->isLost());
  EXPECT_NE(logged().find("worker process " + std::to_string(b->pid()) +
                          " sent an invalid reply: killing it"),
            std::string::npos)
      << logged();
}

TEST(PluginMiddleLayer, ASpreadConnectionSendsEachRequestToTheLeastBusyWorker) {
  Disk disk;
  auto setup = setupFor("recover.py", {{"file", disk.path}});
  auto a = startWorker(setup);
  auto b = startWorker(setup);
  int spreads = 0;
  Connection connection(false, {}, open(a), {},
                        [&](const Connection&, const Connection::Binding& first) {
                          spreads++;
                          EXPECT_EQ(first.instance, a);
                          return std::vector<Connection::Binding>{open(b)};
                        });
  EXPECT_EQ(connection.handleCount(), 1u) << "spread at the first request, not at open";
  std::string expected = read512(connection, nullptr);
  EXPECT_EQ(spreads, 1);
  EXPECT_EQ(connection.handleCount(), 2u);

  // Two reads held in their workers at once: one in each, whichever order they come.
  disk.hold(true);
  std::vector<std::future<std::string>> calls;
  for (int i = 0; i < 2; ++i) {
    calls.push_back(std::async(std::launch::async, [&] { return read512(connection, nullptr); }));
    std::this_thread::sleep_for(200ms);
  }
  EXPECT_EQ(a->callsInFlight(), 1u);
  EXPECT_EQ(b->callsInFlight(), 1u);
  disk.hold(false);
  for (auto& c : calls) EXPECT_EQ(c.get(), expected);

  // What nbdkit caches is asked of the first handle; a flush of every one.
  for (int i = 0; i < 4; ++i) {
    auto from = connection.laneCall(
        Connection::Target::FIRST,
        [](rpc::LaneCall::Builder call, const std::shared_ptr<WorkerInstance>&) {
          call.setGetSize();
        },
        [](rpc::LaneReply::Reader) {});
    EXPECT_EQ(from, a);
  }
  std::vector<std::shared_ptr<WorkerInstance>> flushed;
  connection.laneCall(
      Connection::Target::EVERY,
      [&](rpc::LaneCall::Builder call, const std::shared_ptr<WorkerInstance>& to) {
        call.setFlush();
        flushed.push_back(to);
      },
      [](rpc::LaneReply::Reader reply) { EXPECT_EQ(reply.getStatus().getErrno(), 0); });
  EXPECT_EQ(flushed, (std::vector<std::shared_ptr<WorkerInstance>>{a, b}));
  EXPECT_EQ(connection.close().error, 0);
}

TEST(PluginMiddleLayer, AReplacementThatNeverFinishesConfigIsAbandonedAtTimeout) {
  auto marker = scratchFile("marker");
  unlink(marker.c_str());
  auto setup = setupFor("blocking-config.py", {{"marker", marker}, {"block", "replacements"}});
  setup.timeout = 1000ms;
  Supervisor supervisor(setup);
  supervisor.start();
  supervisor.forEachWorker([](WorkerLink& link) { configComplete(link); });
  supervisor.forEachWorker(
      [&](WorkerLink& link) { supervisor.setThreadModel(threadModel(link)); });
  supervisor.forEachWorker([](WorkerLink& link) { getReady(link); });
  supervisor.endConfigPhase();
  supervisor.startServing();

  auto first = supervisor.instance(Supervisor::Purpose::OPEN);
  killAndWait(*first);
  first.reset();

  // The first caller brings up the replacement (its config() blocks); the second waits for it.
  auto began = std::chrono::steady_clock::now();
  auto pick = [&] {
    try {
      supervisor.instance(Supervisor::Purpose::OPEN);
      return std::string("served");
    } catch (const ScriptFailed&) {
      return std::string("failed");
    }
  };
  auto one = std::async(std::launch::async, pick);
  std::this_thread::sleep_for(200ms);
  auto two = std::async(std::launch::async, pick);
  EXPECT_EQ(one.get(), "failed");
  EXPECT_EQ(two.get(), "failed");
  auto took = std::chrono::steady_clock::now() - began;
  EXPECT_LT(took, 5s) << "callers were held past timeout=1";
  auto log = logged();
  EXPECT_NE(log.find("did not finish starting: a step took longer than 1 seconds; killed it"),
            std::string::npos)
      << log;
  unlink(marker.c_str());
}

}  // namespace
}  // namespace pyworker
