// nbdkit-pyworker-worker-evil: a test-only worker that lies. It takes the real worker's place
// (worker=PATH) and the same arguments, starts the real worker (PYWORKER_EVIL_REAL) on
// socketpairs of its own, and relays the Cap'n Proto messages both ways unchanged, except the
// one reply that PYWORKER_EVIL names, which it corrupts. It relays the lanes (the data path,
// see schema/pyworker.capnp) the same way: each lane the plugin offers becomes a lane of its
// own to the real worker, and its LaneCalls and DataReplies are relayed one by one.
//
//
//   pread-short | pread-long   pread data one byte short / long (inline data only)
//   lane-garbage               the first pread reply is not a Cap'n Proto message
//   query-range                the first query asked on a lane (can_extents, ...) answers 7
//   fixed-answer-range         after_fork's fixedAnswers says can_write answers 7
//   size-negative              get_size answers -1
//   default-export-utf8        default_export's name is not UTF-8
//   list-exports-utf8          list_exports' first name is not UTF-8
//   extents-empty              extents returns an empty list
//   extents-too-many           extents returns 1 Mi + 1 (contiguous, alternating) extents,
//                              more than a correct worker ever sends
//   lane-hangup                the first pread's lane is closed instead of answered
//
// or, once the plugin has opened a connection (the first open call on a lane), makes calls of
// its own on the serving connection: a runaway worker that floods the plugin with Host.debug calls (1 KiB each, for
// PYWORKER_EVIL_FLOOD_SECONDS, default 5) while relaying as before:
//
//   host-flood                 each call finished properly (capnp's Finish)
//   host-flood-unfinished      never finished, so the plugin must remember every answer
//   host-flood-unread          and the plugin's replies are never read any more
//
// With PYWORKER_EVIL_ONCE=FILE only the first such reply of the whole test is corrupted (the
// proxy that manages to create FILE does it), so the replacement worker behaves.
//
// Why a relay rather than a flag in the real worker: the worker and the plugin stay exactly
// as shipped (no fault-injection code in production), the script really runs, and the plugin
// sees real Cap'n Proto messages from a real socket, just with wrong contents.

#include <capnp/message.h>
#include <capnp/rpc.capnp.h>
#include <capnp/serialize.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "lane-offers.h"
#include "pyworker.capnp.h"

extern char** environ;

namespace {

std::string mode;
std::string onceFile;

constexpr uint32_t FLOOD_QUESTIONS = 0x40000000;
// Question ids of the flood's own calls: far above the real worker's, which start at 0.

struct Pending {
  uint64_t interface;
  uint16_t method;
};

[[noreturn]] void die(const char* what) {
  fprintf(stderr, "nbdkit-pyworker-worker-evil: %s: %s\n", what, strerror(errno));
  _exit(97);
}

bool readFully(int fd, void* buffer, size_t size) {
  auto* p = static_cast<char*>(buffer);
  while (size > 0) {
    ssize_t n = read(fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    size -= n;
  }
  return true;
}

bool writeFully(int fd, const void* buffer, size_t size) {
  auto* p = static_cast<const char*>(buffer);
  while (size > 0) {
    ssize_t n = write(fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    size -= n;
  }
  return true;
}

bool readMessage(int fd, kj::Array<capnp::word>& words) {
  // One message in the standard framing, as words (header included).
  uint32_t first[2];
  if (!readFully(fd, first, 8)) return false;
  uint32_t segments = first[0] + 1;
  if (segments > 512) return false;
  size_t headerWords = (4 * (1 + segments) + 7) / 8;
  std::vector<uint32_t> sizes(headerWords * 2);
  sizes[0] = first[0];
  sizes[1] = first[1];
  if (headerWords > 1 && !readFully(fd, sizes.data() + 2, headerWords * 8 - 8)) return false;
  size_t total = headerWords;
  for (uint32_t i = 0; i < segments; ++i) total += sizes[1 + i];
  words = kj::heapArray<capnp::word>(total);
  memcpy(static_cast<void*>(words.begin()), sizes.data(), headerWords * 8);
  return readFully(fd, words.begin() + headerWords, (total - headerWords) * 8);
}

capnp::ReaderOptions options() {
  capnp::ReaderOptions o;
  o.traversalLimitInWords = uint64_t{1} << 30;
  return o;
}

bool claim() {
  // Whether this reply is the one to corrupt.
  if (onceFile.empty()) return true;
  int fd = open(onceFile.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  close(fd);
  return true;
}

template <typename Results, typename Corrupt>
bool rewrite(capnp::rpc::Message::Reader message, int out, Corrupt&& corrupt) {
  capnp::MallocMessageBuilder builder;
  builder.setRoot(message);
  corrupt(builder.getRoot<capnp::rpc::Message>()
              .getReturn()
              .getResults()
              .getContent()
              .getAs<Results>());
  kj::FdOutputStream stream(out);
  capnp::writeMessage(stream, builder);
  return true;
}

bool maybeCorrupt(capnp::rpc::Message::Reader message, const Pending& call, int out) {
  // Returns true if it wrote a corrupted message instead of the original.
  using namespace pyworker::rpc;
  const uint64_t WORKER = capnp::typeId<Worker>();
  auto is = [&](const char* m, uint64_t interface, uint16_t method) {
    return mode == m && call.interface == interface && call.method == method;
  };
  if (is("fixed-answer-range", WORKER, 5)) {
    if (!claim()) return false;
    return rewrite<Worker::AfterForkResults>(
        message, out, [](Worker::AfterForkResults::Builder r) {
          r.getFixedAnswers().set(static_cast<unsigned>(Query::CAN_WRITE), 7);
        });
  }
  if (is("default-export-utf8", WORKER, 10)) {
    if (!claim()) return false;
    return rewrite<Worker::DefaultExportResults>(
        message, out, [](Worker::DefaultExportResults::Builder r) {
          r.setName(capnp::Text::Reader("bad\xff"));
        });
  }
  if (is("list-exports-utf8", WORKER, 9)) {
    if (!claim()) return false;
    return rewrite<Worker::ListExportsResults>(
        message, out, [](Worker::ListExportsResults::Builder r) {
          r.setUseDefault(false);
          auto list = r.initExports(1);
          list[0].setName(capnp::Text::Reader("bad\xc0\xaf"));
        });
  }
  return false;
}

struct Relay {
  std::mutex mutex;
  std::map<uint32_t, Pending> calls;  // the plugin's questions, by id
  std::mutex writing;                 // whole messages to the plugin, from two threads
  bool flooding = false;
  std::atomic<bool> stopReading = false;  // host-flood-unread: the plugin's replies pile up
  int plugin = -1;                        // the plugin's end
};

Relay* servingRelay = nullptr;  // set before any relay thread starts

bool writeMessageTo(Relay& relay, int fd, capnp::MessageBuilder& message) {
  auto words = capnp::messageToFlatArray(message);
  std::lock_guard<std::mutex> lock(relay.writing);
  return writeFully(fd, words.begin(), words.size() * sizeof(capnp::word));
}

void flood(Relay& relay, int plugin) {
  // The plugin serves Host as its bootstrap: ask for it, then call debug on the answer.
  bool finish = mode != "host-flood-unfinished";
  {
    capnp::MallocMessageBuilder message;
    message.initRoot<capnp::rpc::Message>().initBootstrap().setQuestionId(FLOOD_QUESTIONS);
    if (!writeMessageTo(relay, plugin, message)) return;
  }
  const char* seconds = getenv("PYWORKER_EVIL_FLOOD_SECONDS");
  auto end = std::chrono::steady_clock::now() +
             std::chrono::milliseconds(static_cast<int>(1000 * atof(seconds ? seconds : "5")));
  std::string text(1024, 'f');
  uint64_t calls = 0;
  for (uint32_t id = FLOOD_QUESTIONS + 1; std::chrono::steady_clock::now() < end; ++id) {
    capnp::MallocMessageBuilder message;
    auto call = message.initRoot<capnp::rpc::Message>().initCall();
    call.setQuestionId(id);
    call.initTarget().initPromisedAnswer().setQuestionId(FLOOD_QUESTIONS);
    call.setInterfaceId(capnp::typeId<pyworker::rpc::Host>());
    call.setMethodId(0);  // debug
    call.initParams().getContent().initAs<pyworker::rpc::Host::DebugParams>().setMessage(text);
    if (!writeMessageTo(relay, plugin, message)) break;
    if (finish) {
      capnp::MallocMessageBuilder done;
      done.initRoot<capnp::rpc::Message>().initFinish().setQuestionId(id);
      if (!writeMessageTo(relay, plugin, done)) break;
    }
    ++calls;
  }
  fprintf(stderr, "nbdkit-pyworker-worker-evil: flood done: %llu calls\n",
          static_cast<unsigned long long>(calls));
}

bool floods() { return mode.rfind("host-flood", 0) == 0; }

void startFlood() {
  // A lane relays the plugin's first open call.
  if (!floods() || servingRelay == nullptr) return;
  Relay& relay = *servingRelay;
  {
    std::lock_guard<std::mutex> lock(relay.mutex);
    if (relay.flooding) return;
    relay.flooding = true;  // once per worker; PYWORKER_EVIL_ONCE applies
  }
  if (!claim()) return;
  relay.stopReading = mode == "host-flood-unread";
  std::thread([&relay] { flood(relay, relay.plugin); }).detach();
}

void pluginToWorker(Relay& relay, int from, int to) {
  kj::Array<capnp::word> words;
  while (readMessage(from, words)) {
    bool ours = false;  // an answer to the flood: the real worker never asked
    try {
      capnp::FlatArrayMessageReader reader(words, options());
      auto message = reader.getRoot<capnp::rpc::Message>();
      if (message.isCall()) {
        auto call = message.getCall();
        std::lock_guard<std::mutex> lock(relay.mutex);
        relay.calls[call.getQuestionId()] = {call.getInterfaceId(), call.getMethodId()};
      }
      ours = message.isReturn() && message.getReturn().getAnswerId() >= FLOOD_QUESTIONS;
    } catch (const kj::Exception&) {
    }
    if (!ours && !writeFully(to, words.begin(), words.size() * 8)) break;
    if (relay.stopReading) {
      for (;;) pause();  // the plugin's replies pile up in its socket from now on
    }
  }
  shutdown(to, SHUT_WR);  // the real worker exits on EOF, as it would without us
}

void workerToPlugin(Relay& relay, int from, int to) {
  kj::Array<capnp::word> words;
  while (readMessage(from, words)) {
    bool done = false;
    try {
      capnp::FlatArrayMessageReader reader(words, options());
      auto message = reader.getRoot<capnp::rpc::Message>();
      if (message.isReturn() && message.getReturn().isResults()) {
        Pending call{0, 0};
        bool known = false;
        {
          std::lock_guard<std::mutex> lock(relay.mutex);
          auto it = relay.calls.find(message.getReturn().getAnswerId());
          if (it != relay.calls.end()) {
            call = it->second;
            known = true;
            relay.calls.erase(it);
          }
        }
        if (known) done = maybeCorrupt(message, call, to);
      }
    } catch (const kj::Exception& e) {
      fprintf(stderr, "nbdkit-pyworker-worker-evil: %s\n", e.getDescription().cStr());
    }
    if (!done) {
      std::lock_guard<std::mutex> lock(relay.writing);
      if (!writeFully(to, words.begin(), words.size() * 8)) break;
    }
  }
  shutdown(to, SHUT_WR);
}

// --- lanes ---

bool writeWords(int fd, const kj::Array<capnp::word>& words) {
  return writeFully(fd, words.begin(), words.size() * 8);
}

bool corruptLaneReply(const kj::Array<capnp::word>& words, int out) {
  // Returns true if it wrote (or withheld) something else instead of the original reply.
  using namespace pyworker::rpc;
  if (mode == "lane-garbage") {
    if (!claim()) return false;
    uint32_t junk[4] = {0x7fffffff, 0xffffffff, 0, 0};  // 2^31 segments: no message at all
    writeFully(out, junk, sizeof(junk));
    return true;
  }
  if (mode == "lane-hangup") {
    if (!claim()) return false;
    shutdown(out, SHUT_RDWR);
    return true;
  }
  capnp::FlatArrayMessageReader reader(words, options());
  auto reply = reader.getRoot<LaneReply>();
  if (reply.getStatus().getErrno() != 0) return false;
  capnp::MallocMessageBuilder builder;
  builder.setRoot(reply);
  auto corrupted = builder.getRoot<LaneReply>();
  if (mode == "pread-short" || mode == "pread-long") {
    auto data = reply.getData();
    if (data.size() == 0 || !claim()) return false;  // a shared-memory pread: nothing inline
    auto copy = kj::heapArray<kj::byte>(data.size() + 1);
    memcpy(copy.begin(), data.begin(), data.size());
    copy[data.size()] = 0x55;
    corrupted.setData(mode == "pread-short" ? copy.slice(0, data.size() - 1) : copy.asPtr());
  } else if (mode == "extents-empty") {
    if (!reply.hasExtents() || !claim()) return false;
    corrupted.initExtents(0);
  } else if (mode == "extents-too-many") {
    if (!reply.hasExtents() || !claim()) return false;
    auto start = reply.getExtents()[0].getOffset();
    auto list = corrupted.initExtents(1024 * 1024 + 1);
    for (uint32_t i = 0; i < list.size(); ++i) {
      list[i].setOffset(start + i * 512ull);
      list[i].setLength(512);
      list[i].setType(i % 2 ? 3 : 0);
    }
  } else if (mode == "query-range" || mode == "size-negative") {
    if (!claim()) return false;
    if (mode == "query-range") corrupted.setValue(7);
    if (mode == "size-negative") corrupted.setSize(-1);
  } else {
    return false;
  }
  kj::FdOutputStream stream(out);
  capnp::writeMessage(stream, builder);
  return true;
}

void relayLane(int plugin, int worker) {
  // One call at a time, as the plugin uses a lane.
  kj::Array<capnp::word> words;
  while (readMessage(plugin, words)) {
    bool target = false;  // the kind of call whose reply this mode corrupts
    try {
      capnp::FlatArrayMessageReader reader(words, options());
      auto call = reader.getRoot<pyworker::rpc::LaneCall>();
      if (call.isOpen()) startFlood();
      target = mode == "extents-empty" || mode == "extents-too-many" ? call.isExtents()
               : mode == "query-range"   ? call.isQuery()
               : mode == "size-negative" ? call.isGetSize()
                                         : call.isPread();
    } catch (const kj::Exception&) {
    }
    if (!writeWords(worker, words) || !readMessage(worker, words)) break;
    bool done = false;
    if (target) {
      try {
        done = corruptLaneReply(words, plugin);
      } catch (const kj::Exception& e) {
        fprintf(stderr, "nbdkit-pyworker-worker-evil: %s\n", e.getDescription().cStr());
      }
    }
    if (!done && !writeWords(plugin, words)) break;
  }
  close(plugin);
  close(worker);
}

void relayLaneOffers(int fromPlugin, int toWorker) {
  for (;;) {
    KJ_IF_MAYBE(lane, pyworker::takeOfferedLane(fromPlugin)) {
      kj::AutoCloseFd ours = pyworker::offerNewLane(toWorker);
      std::thread([plugin = lane->release(), worker = ours.release()] {
        relayLane(plugin, worker);
      }).detach();
    } else {
      break;
    }
  }
  close(toWorker);
}

int high(int fd) {
  int copy = fcntl(fd, F_DUPFD_CLOEXEC, 10);
  if (copy < 0) die("fcntl");
  return copy;
}

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  const char* real = getenv("PYWORKER_EVIL_REAL");
  if (real == nullptr) {
    fputs("nbdkit-pyworker-worker-evil: PYWORKER_EVIL_REAL is not set\n", stderr);
    return 1;
  }
  mode = getenv("PYWORKER_EVIL") ? getenv("PYWORKER_EVIL") : "";
  onceFile = getenv("PYWORKER_EVIL_ONCE") ? getenv("PYWORKER_EVIL_ONCE") : "";

  // --serve-fd=N [--config-fd=M] --lane-fd=L ... -- LABEL: the plugin's ends; the real worker
  // gets ours at the same numbers.
  std::vector<int> targets;
  int laneTarget = -1;
  int serveTarget = -1;
  std::vector<std::string> args = {real};
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    args.push_back(arg);
    for (const char* prefix : {"--serve-fd=", "--config-fd="}) {
      if (arg.rfind(prefix, 0) == 0) {
        targets.push_back(atoi(arg.c_str() + strlen(prefix)));
        if (prefix[2] == 's') serveTarget = targets.back();
      }
    }
    if (arg.rfind("--lane-fd=", 0) == 0) laneTarget = atoi(arg.c_str() + strlen("--lane-fd="));
  }
  struct Link {
    int target, plugin, ours, theirs;
    bool serving;
  };
  std::vector<Link> links;
  for (int target : targets) {
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0) die("socketpair");
    links.push_back({target, high(target), high(pair[0]), high(pair[1]), target == serveTarget});
    close(target);
    close(pair[0]);
    close(pair[1]);
  }

  Link lanes{-1, -1, -1, -1, false};
  if (laneTarget >= 0) {
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0) die("socketpair");
    lanes = {laneTarget, high(laneTarget), high(pair[0]), high(pair[1]), false};
    close(laneTarget);
    close(pair[0]);
    close(pair[1]);
  }

  posix_spawn_file_actions_t files;
  posix_spawn_file_actions_init(&files);
  for (auto& l : links) posix_spawn_file_actions_adddup2(&files, l.theirs, l.target);
  if (lanes.target >= 0) posix_spawn_file_actions_adddup2(&files, lanes.theirs, lanes.target);
  std::vector<char*> childArgv;
  for (auto& a : args) childArgv.push_back(a.data());
  childArgv.push_back(nullptr);
  pid_t child;
  int error = posix_spawn(&child, real, &files, nullptr, childArgv.data(), environ);
  if (error != 0) {
    errno = error;
    die(real);
  }
  for (auto& l : links) close(l.theirs);
  if (lanes.target >= 0) close(lanes.theirs);

  std::vector<std::unique_ptr<Relay>> relays;
  std::vector<std::thread> threads;
  for (auto& l : links) {
    relays.push_back(std::make_unique<Relay>());
    Relay& relay = *relays.back();
    relay.plugin = l.plugin;
    if (l.serving) servingRelay = &relay;
    threads.emplace_back([&relay, l] { pluginToWorker(relay, l.plugin, l.ours); });
    threads.emplace_back([&relay, l] { workerToPlugin(relay, l.ours, l.plugin); });
  }
  if (lanes.target >= 0) {
    threads.emplace_back([lanes] { relayLaneOffers(lanes.plugin, lanes.ours); });
  }
  for (auto& t : threads) t.detach();

  // Die as the real worker died, so that the plugin's log says the same.
  int status;
  while (waitpid(child, &status, 0) < 0) {
    if (errno != EINTR) die("waitpid");
  }
  if (WIFSIGNALED(status)) {
    signal(WTERMSIG(status), SIG_DFL);
    raise(WTERMSIG(status));
  }
  _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 1);
}
