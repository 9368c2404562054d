// Writes the seed corpus of worker-lanes-fuzz: one well-formed LaneCall of each kind, naming
// the handle the fixture keeps open (so that the script really runs), as the plugin writes it.
//
//   worker-lanes-seeds DIRECTORY

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <capnp/message.h>
#include <capnp/serialize.h>

#include <string>

#include "worker-fixture.h"

namespace pyworker::fuzz {
namespace {

std::string directory;
int written = 0;

template <typename Fill>
void seed(const char* name, Fill&& fill) {
  capnp::MallocMessageBuilder message;
  auto call = message.initRoot<rpc::LaneCall>();
  call.setHandle(WorkerFixture::get().openHandleId());
  fill(call);
  auto words = capnp::messageToFlatArray(message);
  auto bytes = words.asBytes();
  std::string path = directory + "/" + name;
  FILE* file = fopen(path.c_str(), "wb");
  if (file == nullptr || fwrite(bytes.begin(), 1, bytes.size(), file) != bytes.size() ||
      fclose(file) != 0) {
    fprintf(stderr, "worker-lanes-seeds: %s: %s\n", path.c_str(), strerror(errno));
    exit(1);
  }
  ++written;
}

void range(rpc::LaneCall::Builder call, uint32_t count, uint64_t offset, uint32_t flags) {
  call.setCount(count);
  call.setOffset(offset);
  call.setFlags(flags);
}

void openCall(rpc::LaneCall::Builder call, const char* exportName) {
  call.setHandle(0);
  call.setOpen();
  call.setReadonly(true);
  auto context = call.initContext();
  context.setExportName(kj::StringPtr(exportName).asBytes());
  context.setHasExportName(true);
  context.setPeerPid(1234);
}

void writeAll() {
  // Each open leaves a handle in the fixture's worker (no input knows its id to close it).
  seed("open", [](auto call) { openCall(call, "seed"); });
  seed("open-refused", [](auto call) { openCall(call, "refuse"); });
  seed("get-size", [](auto call) { call.setGetSize(); });
  seed("block-size", [](auto call) { call.setBlockSize(); });
  seed("export-description", [](auto call) { call.setExportDescription(); });
  for (uint16_t q = 0; q <= static_cast<uint16_t>(rpc::Query::CAN_MULTI_CONN); ++q) {
    std::string name = "query-" + std::to_string(q);
    seed(name.c_str(), [q](auto call) { call.setQuery(static_cast<rpc::Query>(q)); });
  }
  seed("pwrite", [](auto call) {
    range(call, 13, 100, 2);  // FUA
    call.setData(kj::StringPtr("hello, fuzzer").asBytes());
    call.setPwrite();
  });
  seed("pwrite-shared", [](auto call) {
    range(call, 65536, 0, 0);
    auto shared = call.initShared();
    shared.setOffset(65536);
    shared.setLength(65536);
    call.setPwrite();
  });
  seed("pread", [](auto call) {
    range(call, 16, 98, 0);
    call.setPread();
  });
  seed("pread-shared", [](auto call) {
    range(call, 65536, 0, 0);
    auto shared = call.initShared();
    shared.setOffset(0);
    shared.setLength(65536);
    call.setPread();
  });
  seed("pread-fails", [](auto call) {
    range(call, 512, 4096, 0);
    call.setPread();
  });
  seed("pread-disconnects", [](auto call) {
    range(call, 512, 8192, 0);
    call.setPread();
  });
  seed("flush", [](auto call) { call.setFlush(); });
  seed("trim", [](auto call) {
    range(call, 4096, 0, 2);
    call.setTrim();
  });
  seed("zero", [](auto call) {
    range(call, 4096, 0, 1);
    call.setZero();
  });
  seed("zero-falls-back", [](auto call) {
    range(call, 4096, 0, 0);
    call.setZero();
  });
  seed("cache", [](auto call) {
    range(call, 4096, 0, 0);
    call.setCache();
  });
  seed("extents", [](auto call) {
    range(call, 8192, 0, 4);
    call.setExtents();
  });
  seed("extents-fails", [](auto call) {
    range(call, 8192, 4096, 0);
    call.setExtents();
  });
}

}  // namespace
}  // namespace pyworker::fuzz

int main(int argc, char** argv) {
  if (argc != 2) {
    fputs("usage: worker-lanes-seeds DIRECTORY\n", stderr);
    return 2;
  }
  pyworker::fuzz::directory = argv[1];
  mkdir(argv[1], 0755);
  pyworker::fuzz::writeAll();
  printf("worker-lanes-seeds: %d seeds in %s\n", pyworker::fuzz::written, argv[1]);
  return 0;
}
