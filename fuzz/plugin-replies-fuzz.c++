// libFuzzer target: the plugin's handling of the worker's replies. The input is one reply (see
// plugin-replies-input.h), read with the plugin's reader limits (a lane reply through the
// plugin's own LaneStream, off a real socket), copied out and checked exactly as
// plugin/plugin.c++, plugin/lane-client.c++ and plugin/bring-up.c++ do: the same decode
// functions (reply-decoding.h), the same checks (reply-checks.h), the same ScriptOutcome, the
// same replay of a lane call's Host calls. Whatever the bytes, the outcome must be a value, a
// BadReply, a LaneError or a kj::Exception (the plugin turns each into a failed request);
// anything else (a crash, a sanitizer report, another exception) is a bug.

#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <capnp/serialize.h>
#include <kj/debug.h>

#include <optional>
#include <vector>

#include "host-server.h"
#include "lane-stream.h"
#include "plugin-replies-input.h"
#include "pyworker.capnp.h"
#include "reply-checks.h"
#include "reply-decoding.h"
#include "rpc-limits.h"
#include "script-outcome.h"

namespace pyworker::fuzz {
namespace {

constexpr int ENVELOPE_DEPTH = 3;
// Message -> Return -> Payload: the levels of nesting spent before a results struct.

capnp::ReaderOptions resultsReaderOptions() {
  auto options = rpcReaderOptions();
  options.nestingLimit = NESTING_LIMIT - ENVELOPE_DEPTH;
  return options;
}

void pread(rpc::LaneReply::Reader reply, uint32_t count, bool shared) {
  // plugin.c++'s pyworkerPread: the plugin's own decoding, into buffers of the request's size.
  auto outcome = ScriptOutcome::from(reply.getStatus());
  size_t received = count;
  std::vector<kj::byte> buffer(count);
  std::vector<kj::byte> sharedRange(shared ? count : 0);
  if (outcome.error == 0) {
    received = decodePreadReply(reply, shared ? sharedRange.data() : nullptr, buffer.data(),
                                count);
  }
  if (!outcome.report()) return;
  checkPreadSize(received, count);
}

void extents(rpc::LaneReply::Reader reply) {
  // plugin.c++'s pyworkerExtents.
  auto outcome = ScriptOutcome::from(reply.getStatus());
  std::vector<ExtentEntry> entries;
  size_t received = 0;
  if (outcome.error == 0) received = decodeExtents(reply, entries);
  if (!outcome.report()) return;
  checkExtentCount(received);
  checkExtents(entries);
}

void handle(Kind kind, capnp::MessageReader& message) {
  switch (kind) {
  case Kind::LOAD: {  // bring-up.c++'s loadScript()
    auto reply = message.getRoot<rpc::Worker::LoadResults>();
    auto outcome = ScriptOutcome::from(reply.getStatus());
    auto info = reply.getInfo();
    [[maybe_unused]] struct {
      int apiVersion;
      std::string pythonVersion;
      int pep384AbiVersion;
    } copied{info.getApiVersion(), info.getPythonVersion(), info.getPep384AbiVersion()};
    outcome.report();
    break;
  }
  case Kind::STATUS_ONLY:
    ScriptOutcome::from(message.getRoot<rpc::Worker::ConfigResults>().getStatus()).report();
    break;
  case Kind::THREAD_MODEL: {
    auto reply = message.getRoot<rpc::Worker::ThreadModelResults>();
    auto outcome = ScriptOutcome::from(reply.getStatus());
    int32_t model = reply.getModel();
    if (outcome.report()) checkThreadModel(model);
    break;
  }
  case Kind::DUMP_PLUGIN: {
    auto reply = message.getRoot<rpc::Worker::DumpPluginResults>();
    auto outcome = ScriptOutcome::from(reply.getStatus());
    std::string text = copyText(reply.getText());
    outcome.report();
    break;
  }
  case Kind::LIST_EXPORTS: {
    auto reply = message.getRoot<rpc::Worker::ListExportsResults>();
    auto outcome = ScriptOutcome::from(reply.getStatus());
    auto list = decodeExportList(reply);
    if (outcome.report() && !list.useDefault) checkExportList(list);
    break;
  }
  case Kind::DEFAULT_EXPORT: {
    auto reply = message.getRoot<rpc::Worker::DefaultExportResults>();
    auto outcome = ScriptOutcome::from(reply.getStatus());
    auto name = decodeDefaultExport(reply);
    if (outcome.report()) checkText(name, "default export name");
    break;
  }
  default:
    break;  // the lane replies: handleLaneReply()
  case Kind::KIND_COUNT:
    break;
  }
}

void handleLaneReply(Kind kind, uint32_t parameter, rpc::LaneReply::Reader reply) {
  // lane-client.c++'s LaneClient::call (the Host calls first), then plugin.c++'s callback.
  for (auto call : reply.getHostCalls()) replayHostCall(call, "pyworker[1]");
  switch (kind) {
  case Kind::LANE_STATUS:
    ScriptOutcome::from(reply.getStatus()).report();
    break;
  case Kind::OPEN: {
    auto outcome = ScriptOutcome::from(reply.getStatus());  // handle-opening.c++
    if (outcome.error == 0) (void)reply.getHandleId();
    outcome.report();
    break;
  }
  case Kind::GET_SIZE: {
    auto outcome = ScriptOutcome::from(reply.getStatus());
    int64_t size = reply.getSize();
    if (outcome.report()) checkSize(size);
    break;
  }
  case Kind::BLOCK_SIZE: {  // nbdkit itself validates the three values
    auto outcome = ScriptOutcome::from(reply.getStatus());
    [[maybe_unused]] struct {
      uint32_t minimum, preferred, maximum;
    } copied{reply.getMinimum(), reply.getPreferred(), reply.getMaximum()};
    outcome.report();
    break;
  }
  case Kind::EXPORT_DESCRIPTION: {
    auto outcome = ScriptOutcome::from(reply.getStatus());
    auto description = decodeExportDescription(reply);
    if (outcome.report() && description) checkText(*description, "export description");
    break;
  }
  case Kind::QUERY: {
    auto outcome = ScriptOutcome::from(reply.getStatus());
    int32_t value = reply.getValue();
    if (outcome.report()) checkQueryAnswer("can_fuzz", value, parameter % 2 + 1);
    break;
  }
  case Kind::PREAD:
    // 1 byte at least: nbdkit refuses zero-length requests before they reach a plugin.
    pread(reply, 1 + parameter % (SHARED_PAYLOAD_MINIMUM - 1), false);
    break;
  case Kind::PREAD_SHARED:
    pread(reply,
          SHARED_PAYLOAD_MINIMUM + parameter % (64 * 1024 * 1024 - SHARED_PAYLOAD_MINIMUM + 1),
          true);
    break;
  case Kind::EXTENTS:
    extents(reply);
    break;
  default:
    break;
  }
}

void laneReply(Kind kind, uint32_t parameter, const uint8_t* bytes, size_t size) {
  // The bytes as a worker writes them on its lane, then the end of the lane: LaneStream reads
  // one message (or says why not) exactly as the plugin does.
  int pair[2];
  KJ_SYSCALL(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair));
  kj::AutoCloseFd worker(pair[1]);
  LaneStream lane{kj::AutoCloseFd(pair[0])};
  int sndbuf = 4 * 1024 * 1024;
  setsockopt(worker.get(), SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
  for (size_t at = 0; at < size;) {
    ssize_t n = write(worker.get(), bytes + at, size - at);
    if (n <= 0) return;  // more than a socket holds: not what the fuzzer explores here
    at += static_cast<size_t>(n);
  }
  worker = nullptr;
  auto words = lane.read(std::chrono::steady_clock::now() + std::chrono::seconds(1),
                         std::chrono::microseconds(0));
  capnp::FlatArrayMessageReader message(words, rpcReaderOptions());
  handleLaneReply(kind, parameter, message.getRoot<rpc::LaneReply>());
}

}  // namespace
}  // namespace pyworker::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace pyworker::fuzz;
  if (size < HEADER_BYTES) return 0;
  auto kind = static_cast<Kind>(data[0] % static_cast<uint8_t>(Kind::KIND_COUNT));
  uint32_t parameter = 0;
  for (int i = 0; i < 4; ++i) parameter |= uint32_t{data[1 + i]} << (8 * i);
  if (isLaneReply(kind)) {
    try {
      laneReply(kind, parameter, data + HEADER_BYTES, size - HEADER_BYTES);
    } catch (const pyworker::BadReply&) {
    } catch (const pyworker::LaneError&) {
    } catch (const kj::Exception&) {
    }
    return 0;
  }
  // Word-aligned, as the plugin's socket reads are; a trailing partial word is dropped.
  size_t words = (size - HEADER_BYTES) / sizeof(capnp::word);
  auto message = kj::heapArray<capnp::word>(words);
  memcpy(message.begin(), data + HEADER_BYTES, words * sizeof(capnp::word));
  try {
    capnp::FlatArrayMessageReader reader(message, resultsReaderOptions());
    handle(kind, reader);
  } catch (const pyworker::BadReply&) {
  } catch (const kj::Exception&) {
  }
  return 0;
}
