// Writes the seed corpus of plugin-replies-fuzz: one well-formed reply of each kind, as a
// correct worker sends it, plus the malformed ones test_hostile_worker.py corrupts by hand, so
// the fuzzer starts from both sides of every check.
//
//   plugin-replies-seeds DIRECTORY

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <capnp/message.h>
#include <capnp/serialize.h>

#include <string>

#include "plugin-replies-input.h"
#include "pyworker.capnp.h"

namespace pyworker::fuzz {
namespace {

std::string directory;
int written = 0;

template <typename Results, typename Fill>
void seed(const char* name, Kind kind, uint32_t parameter, Fill&& fill) {
  capnp::MallocMessageBuilder message;
  fill(message.initRoot<Results>());
  auto words = capnp::messageToFlatArray(message);
  auto bytes = words.asBytes();
  std::string path = directory + "/" + name;
  FILE* file = fopen(path.c_str(), "wb");
  if (file == nullptr) {
    fprintf(stderr, "plugin-replies-seeds: %s: %s\n", path.c_str(), strerror(errno));
    exit(1);
  }
  std::string header = inputHeader(kind, parameter);
  fwrite(header.data(), 1, header.size(), file);
  fwrite(bytes.begin(), 1, bytes.size(), file);
  if (fclose(file) != 0) exit(1);
  ++written;
}

void failed(rpc::Status::Builder status) {
  status.setErrno(ENOSPC);
  status.setMessage("/tmp/script.py: pread: error: Traceback (most recent call last): ...");
  status.setDisconnect(rpc::Disconnect::SOFT);
}

void writeAll() {
  using rpc::LaneReply;
  using rpc::Worker;
  seed<Worker::LoadResults>("load", Kind::LOAD, 0, [](auto r) {
    r.initStatus();
    auto info = r.initInfo();
    info.setApiVersion(2);
    info.setPythonVersion("3.11.2");
    info.setPep384AbiVersion(3);
  });
  seed<Worker::ConfigResults>("status-ok", Kind::STATUS_ONLY, 0, [](auto r) { r.initStatus(); });
  seed<Worker::ConfigResults>("status-failed", Kind::STATUS_ONLY, 0,
                             [](auto r) { failed(r.initStatus()); });
  seed<Worker::ThreadModelResults>("thread-model", Kind::THREAD_MODEL, 0, [](auto r) {
    r.initStatus();
    r.setModel(3);
  });
  seed<Worker::DumpPluginResults>("dump-plugin", Kind::DUMP_PLUGIN, 0, [](auto r) {
    r.initStatus();
    r.setText("key=value\nother=1\n");
  });
  seed<Worker::ListExportsResults>("list-exports", Kind::LIST_EXPORTS, 0, [](auto r) {
    r.initStatus();
    auto list = r.initExports(3);
    list[0].setName("a");
    list[1].setName("b\xc3\xa9");
    list[1].setDescription("the export b\xc3\xa9");
    list[1].setHasDescription(true);
    list[2].setName("");
  });
  seed<Worker::ListExportsResults>("list-exports-not-utf8", Kind::LIST_EXPORTS, 0, [](auto r) {
    r.initStatus();
    r.initExports(1)[0].setName("bad\xc0\xaf");
  });
  seed<Worker::ListExportsResults>("list-exports-default", Kind::LIST_EXPORTS, 0, [](auto r) {
    r.initStatus();
    r.setUseDefault(true);
  });
  seed<Worker::DefaultExportResults>("default-export", Kind::DEFAULT_EXPORT, 0, [](auto r) {
    r.initStatus();
    r.setName("the default");
  });
  seed<LaneReply>("open-failed", Kind::OPEN, 0, [](auto r) { failed(r.initStatus()); });
  seed<LaneReply>("open", Kind::OPEN, 0, [](auto r) {
    r.initStatus();
    r.setHandleId(7);
  });
  seed<LaneReply>("lane-status-ok", Kind::LANE_STATUS, 0, [](auto r) { r.initStatus(); });
  seed<LaneReply>("lane-status-host-calls", Kind::LANE_STATUS, 0, [](auto r) {
    r.initStatus();
    auto calls = r.initHostCalls(3);
    calls[0].setDebug("a debug line");
    calls[1].setError("an error line");
    calls[2].setShutdown();
  });
  seed<LaneReply>("lane-status-failed", Kind::LANE_STATUS, 0,
                  [](auto r) { failed(r.initStatus()); });
  seed<LaneReply>("get-size", Kind::GET_SIZE, 0, [](auto r) {
    r.initStatus();
    r.setSize(int64_t{1} << 40);
  });
  seed<LaneReply>("block-size", Kind::BLOCK_SIZE, 0, [](auto r) {
    r.initStatus();
    r.setMinimum(512);
    r.setPreferred(4096);
    r.setMaximum(0xffffffff);
  });
  seed<LaneReply>("export-description", Kind::EXPORT_DESCRIPTION, 0,
                                         [](auto r) {
                                           r.initStatus();
                                           r.setDescription("a description");
                                           r.setHasDescription(true);
                                         });
  seed<LaneReply>("query-boolean", Kind::QUERY, 0, [](auto r) {
    r.initStatus();
    r.setValue(1);
  });
  seed<LaneReply>("query-fua", Kind::QUERY, 1, [](auto r) {
    r.initStatus();
    r.setValue(2);
  });
  seed<LaneReply>("pread", Kind::PREAD, 15, [](auto r) {  // count 16
    r.initStatus();
    r.setData(kj::StringPtr("0123456789abcdef").asBytes());
  });
  seed<LaneReply>("pread-short", Kind::PREAD, 16, [](auto r) {  // count 17
    r.initStatus();
    r.setData(kj::StringPtr("0123456789abcdef").asBytes());
  });
  seed<LaneReply>("pread-failed", Kind::PREAD, 511,
                             [](auto r) { failed(r.initStatus()); });
  seed<LaneReply>("pread-shared", Kind::PREAD_SHARED, 0, [](auto r) { r.initStatus(); });
  seed<LaneReply>("extents", Kind::EXTENTS, 8192, [](auto r) {
    r.initStatus();
    auto list = r.initExtents(3);
    list[0].setOffset(0), list[0].setLength(4096), list[0].setType(0);
    list[1].setOffset(4096), list[1].setLength(2048), list[1].setType(1);
    list[2].setOffset(6144), list[2].setLength(2048), list[2].setType(3);
  });
  seed<LaneReply>("extents-gap", Kind::EXTENTS, 8192, [](auto r) {
    r.initStatus();
    auto list = r.initExtents(2);
    list[0].setOffset(0), list[0].setLength(4096);
    list[1].setOffset(8192), list[1].setLength(4096);
  });
}

}  // namespace
}  // namespace pyworker::fuzz

int main(int argc, char** argv) {
  if (argc != 2) {
    fputs("usage: plugin-replies-seeds DIRECTORY\n", stderr);
    return 2;
  }
  pyworker::fuzz::directory = argv[1];
  mkdir(argv[1], 0755);
  pyworker::fuzz::writeAll();
  printf("plugin-replies-seeds: %d seeds in %s\n", pyworker::fuzz::written, argv[1]);
  return 0;
}
