// Writes the seed corpus of worker-requests-fuzz: real conversations of a real capnp client
// (what the plugin's RpcConnection does) with the fixture worker, recorded byte for byte as the
// client wrote them, one file per conversation. Replayed to a fresh connection they mean the
// same thing again: question and export ids start afresh on every connection.
//
//   worker-requests-seeds DIRECTORY

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <capnp/rpc-twoparty.h>

#include <string>

#include "recording-stream.h"
#include "rpc-limits.h"
#include "worker-fixture.h"

namespace pyworker::fuzz {
namespace {

using Conversation = kj::Function<void(rpc::Worker::Client&, kj::WaitScope&)>;

std::string directory;
int written = 0;

void record(const char* name, Conversation conversation) {
  auto& fixture = WorkerFixture::get();
  auto& waitScope = fixture.io().waitScope;
  auto pipe = fixture.io().provider->newTwoWayPipe();
  RecordingStream recording(*pipe.ends[1]);
  {
    capnp::TwoPartyVatNetwork network(recording, capnp::rpc::twoparty::Side::CLIENT,
                                      rpcReaderOptions());
    auto client = capnp::makeRpcClient(network);
    capnp::MallocMessageBuilder vatIdMessage;
    auto vatId = vatIdMessage.initRoot<capnp::rpc::twoparty::VatId>();
    vatId.setSide(capnp::rpc::twoparty::Side::SERVER);
    // The worker serves on the same loop, so the client waits as the plugin does.
    auto served = fixture.connect(*pipe.ends[0]);
    {
      auto worker = client.bootstrap(vatId).castAs<rpc::Worker>();
      conversation(worker, waitScope);
    }
    // Let the releases and finishes of the dropped capabilities go out, then hang up.
    fixture.settle();
    recording.shutdownWrite();
    served->onDisconnect().wait(waitScope);
    fixture.settle();
  }
  fixture.settle();
  std::string path = directory + "/" + name;
  FILE* file = fopen(path.c_str(), "wb");
  if (file == nullptr || fwrite(recording.written.data(), 1, recording.written.size(), file) !=
                             recording.written.size() || fclose(file) != 0) {
    fprintf(stderr, "worker-requests-seeds: %s: %s\n", path.c_str(), strerror(errno));
    exit(1);
  }
  ++written;
}

void setContext(rpc::ConnectionContext::Builder context, const char* exportName) {
  context.setExportName(kj::StringPtr(exportName).asBytes());
  context.setHasExportName(true);
  context.setPeerPid(1234);
  context.setPeerUid(0);
  context.setPeerGid(0);
  uint8_t unixAddress[] = {1, 0, '/', 't', 'm', 'p', '/', 's', 0};  // AF_UNIX, "/tmp/s"
  context.setPeerAddress(kj::arrayPtr(unixAddress, sizeof(unixAddress)));
}

void writeAll() {
  record("process-wide", [](rpc::Worker::Client& worker, kj::WaitScope& ws) {
    auto config = worker.configRequest();
    config.setKey("size");
    config.setValue("1M");
    config.send().wait(ws);
    auto refused = worker.configRequest();
    refused.setKey("fail");
    refused.setValue("now");
    refused.send().wait(ws);
    worker.configCompleteRequest().send().wait(ws);
    worker.threadModelRequest().send().wait(ws);
    worker.getReadyRequest().send().wait(ws);
    worker.dumpPluginRequest().send().wait(ws);
  });
  record("new-connection", [](rpc::Worker::Client& worker, kj::WaitScope& ws) {
    auto preconnect = worker.preconnectRequest();
    setContext(preconnect.initContext(), "");
    preconnect.send().wait(ws);
    auto list = worker.listExportsRequest();
    list.setReadonly(true);
    list.initContext().setIsTls(true);
    list.send().wait(ws);
    auto named = worker.defaultExportRequest();
    setContext(named.initContext(), "");
    named.send().wait(ws);
  });
  record("cleanup", [](rpc::Worker::Client& worker, kj::WaitScope& ws) {
    worker.cleanupRequest().send().wait(ws);
  });
}

}  // namespace
}  // namespace pyworker::fuzz

int main(int argc, char** argv) {
  if (argc != 2) {
    fputs("usage: worker-requests-seeds DIRECTORY\n", stderr);
    return 2;
  }
  pyworker::fuzz::directory = argv[1];
  mkdir(argv[1], 0755);
  pyworker::fuzz::writeAll();
  printf("worker-requests-seeds: %d seeds in %s\n", pyworker::fuzz::written, argv[1]);
  return 0;
}
