// libFuzzer target: the plugin's handling of the worker's replies. The input is one reply (see
// plugin-replies-input.h), read with the plugin's reader limits, copied out and checked exactly
// as plugin/plugin.c++ and plugin/supervisor.c++ do: the same decode functions
// (reply-decoding.h), the same checks (reply-checks.h), the same ScriptOutcome. Whatever the
// bytes, the outcome must be a value, a BadReply or a kj::Exception (the RPC layer turns the
// latter into a failed call); anything else (a crash, a sanitizer report, another exception)
// is a bug.

#include <string.h>

#include <capnp/serialize.h>

#include <optional>
#include <vector>

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

constexpr uint32_t SHARED_PAYLOAD_MINIMUM = 32 * 1024;  // as in plugin.c++

void pread(rpc::Handle::PreadResults::Reader reply, uint32_t count, bool shared) {
  // plugin.c++'s pyworkerPread: copies only a reply of the right size.
  auto outcome = ScriptOutcome::from(reply.getStatus());
  size_t received = count;
  if (outcome.error == 0) {
    auto data = reply.getData();
    if (shared) {
      received = data.size() == 0 ? count : count + data.size();
    } else {
      received = data.size();
      if (received == count) {
        std::vector<kj::byte> buffer(count);
        memcpy(buffer.data(), data.begin(), count);
      }
    }
  }
  if (!outcome.report()) return;
  checkPreadSize(received, count);
}

void extents(rpc::Handle::ExtentsResults::Reader reply) {
  // plugin.c++'s pyworkerExtents.
  auto outcome = ScriptOutcome::from(reply.getStatus());
  auto list = reply.getExtents();
  size_t received = list.size();
  std::vector<ExtentEntry> entries;
  if (outcome.error == 0 && received <= MAX_EXTENTS) {
    entries.reserve(received);
    for (auto e : list) entries.push_back({e.getOffset(), e.getLength(), e.getType()});
  }
  if (!outcome.report()) return;
  checkExtentCount(received);
  checkExtents(entries);
}

void handle(Kind kind, uint32_t parameter, capnp::MessageReader& message) {
  switch (kind) {
  case Kind::LOAD: {  // supervisor.c++'s configure()
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
    ScriptOutcome::from(message.getRoot<rpc::Handle::FlushResults>().getStatus()).report();
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
  case Kind::OPEN: {
    // No capability table outside an RPC connection: the handle reads as a broken capability.
    auto reply = message.getRoot<rpc::Worker::OpenResults>();
    auto outcome = ScriptOutcome::from(reply.getStatus());
    if (outcome.error == 0) rpc::Handle::Client handle = reply.getHandle();
    outcome.report();
    break;
  }
  case Kind::GET_SIZE: {
    auto reply = message.getRoot<rpc::Handle::GetSizeResults>();
    auto outcome = ScriptOutcome::from(reply.getStatus());
    int64_t size = reply.getSize();
    if (outcome.report()) checkSize(size);
    break;
  }
  case Kind::BLOCK_SIZE: {  // nbdkit itself validates the three values
    auto reply = message.getRoot<rpc::Handle::BlockSizeResults>();
    auto outcome = ScriptOutcome::from(reply.getStatus());
    [[maybe_unused]] struct {
      uint32_t minimum, preferred, maximum;
    } copied{reply.getMinimum(), reply.getPreferred(), reply.getMaximum()};
    outcome.report();
    break;
  }
  case Kind::EXPORT_DESCRIPTION: {
    auto reply = message.getRoot<rpc::Handle::ExportDescriptionResults>();
    auto outcome = ScriptOutcome::from(reply.getStatus());
    auto description = decodeExportDescription(reply);
    if (outcome.report() && description) checkText(*description, "export description");
    break;
  }
  case Kind::QUERY: {
    auto reply = message.getRoot<rpc::Handle::QueryResults>();
    auto outcome = ScriptOutcome::from(reply.getStatus());
    int32_t value = reply.getValue();
    if (outcome.report()) checkQueryAnswer("can_fuzz", value, parameter % 2 + 1);
    break;
  }
  case Kind::PREAD:
    // 1 byte at least: nbdkit refuses zero-length requests before they reach a plugin.
    pread(message.getRoot<rpc::Handle::PreadResults>(),
          1 + parameter % (SHARED_PAYLOAD_MINIMUM - 1), false);
    break;
  case Kind::PREAD_SHARED:
    pread(message.getRoot<rpc::Handle::PreadResults>(),
          SHARED_PAYLOAD_MINIMUM + parameter % (64 * 1024 * 1024 - SHARED_PAYLOAD_MINIMUM + 1),
          true);
    break;
  case Kind::EXTENTS:
    extents(message.getRoot<rpc::Handle::ExtentsResults>());
    break;
  case Kind::KIND_COUNT:
    break;
  }
}

}  // namespace
}  // namespace pyworker::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace pyworker::fuzz;
  if (size < HEADER_BYTES) return 0;
  auto kind = static_cast<Kind>(data[0] % static_cast<uint8_t>(Kind::KIND_COUNT));
  uint32_t parameter = 0;
  for (int i = 0; i < 4; ++i) parameter |= uint32_t{data[1 + i]} << (8 * i);
  // Word-aligned, as the plugin's socket reads are; a trailing partial word is dropped.
  size_t words = (size - HEADER_BYTES) / sizeof(capnp::word);
  auto message = kj::heapArray<capnp::word>(words);
  memcpy(message.begin(), data + HEADER_BYTES, words * sizeof(capnp::word));
  try {
    capnp::FlatArrayMessageReader reader(message, resultsReaderOptions());
    handle(kind, parameter, reader);
  } catch (const pyworker::BadReply&) {
  } catch (const kj::Exception&) {
  }
  return 0;
}
