// Writes the seed corpus of plugin-connection-fuzz: what a real capnp peer on the worker's
// side writes to a real RpcConnection, recorded byte for byte: its answer to the plugin's
// bootstrap question, and Host calls, waited for one by one and pipelined.
//
//   plugin-connection-seeds DIRECTORY

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <capnp/rpc-twoparty.h>
#include <kj/debug.h>

#include <string>

#include "recording-stream.h"
#include "rpc-connection.h"

namespace pyworker::fuzz {
namespace {

class IdleWorker final: public rpc::Worker::Server {};
// The worker's bootstrap, answered but never called here.

using Conversation = kj::Function<void(rpc::Host::Client&, kj::WaitScope&)>;

std::string directory;
int written = 0;

void record(kj::AsyncIoContext& io, const char* name, Conversation conversation) {
  int fds[2];
  KJ_SYSCALL(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds));
  auto& lowLevel = *io.lowLevelProvider;
  std::string bytes;
  {
    RpcConnection plugin(lowLevel, kj::AutoCloseFd(fds[0]), "pyworker[seeds]", 0);
    auto socket = lowLevel.wrapSocketFd(kj::AutoCloseFd(fds[1]),
                                        kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
    RecordingStream recording(*socket);
    {
      capnp::TwoPartyVatNetwork network(recording, capnp::rpc::twoparty::Side::SERVER,
                                        rpcReaderOptions());
      auto rpcSystem = capnp::makeRpcServer(network, rpc::Worker::Client(kj::heap<IdleWorker>()));
      capnp::MallocMessageBuilder vatIdMessage;
      auto vatId = vatIdMessage.initRoot<capnp::rpc::twoparty::VatId>();
      vatId.setSide(capnp::rpc::twoparty::Side::CLIENT);
      {
        auto host = rpcSystem.bootstrap(vatId).castAs<rpc::Host>();
        conversation(host, io.waitScope);
      }
      kj::evalLast([]() {}).wait(io.waitScope);  // releases and finishes go out
      recording.shutdownWrite();
      plugin.onDisconnect().wait(io.waitScope);
    }
    bytes = kj::mv(recording.written);
  }
  std::string path = directory + "/" + name;
  FILE* file = fopen(path.c_str(), "wb");
  if (file == nullptr || fwrite(bytes.data(), 1, bytes.size(), file) != bytes.size() ||
      fclose(file) != 0) {
    fprintf(stderr, "plugin-connection-seeds: %s: %s\n", path.c_str(), strerror(errno));
    exit(1);
  }
  ++written;
}

void debug(rpc::Host::Client& host, const char* text, kj::WaitScope& waitScope) {
  auto request = host.debugRequest();
  request.setMessage(text);
  request.send().wait(waitScope);
}

void writeAll(kj::AsyncIoContext& io) {
  record(io, "host-calls", [](rpc::Host::Client& host, kj::WaitScope& ws) {
    debug(host, "open export='a' readonly=False", ws);
    auto error = host.errorRequest();
    error.setMessage("/tmp/script.py: close: error: Traceback (most recent call last): ...");
    error.send().wait(ws);
    host.shutdownRequest().send().wait(ws);
  });
  record(io, "nul-in-text", [](rpc::Host::Client& host, kj::WaitScope& ws) {
    auto request = host.debugRequest();
    request.setMessage(capnp::Text::Reader("before\0after", 12));
    request.send().wait(ws);
  });
  record(io, "pipelined", [](rpc::Host::Client& host, kj::WaitScope& ws) {
    kj::Vector<kj::Promise<void>> calls;
    for (int i = 0; i < 16; ++i) {
      auto request = host.debugRequest();
      request.setMessage(kj::str("message ", i));
      calls.add(request.send().ignoreResult());
    }
    kj::joinPromises(calls.releaseAsArray()).wait(ws);
  });
  record(io, "answer-only", [](rpc::Host::Client&, kj::WaitScope&) {});
}

}  // namespace
}  // namespace pyworker::fuzz

int main(int argc, char** argv) {
  if (argc != 2) {
    fputs("usage: plugin-connection-seeds DIRECTORY\n", stderr);
    return 2;
  }
  pyworker::fuzz::directory = argv[1];
  mkdir(argv[1], 0755);
  auto io = kj::setupAsyncIo();
  pyworker::fuzz::writeAll(io);
  printf("plugin-connection-seeds: %d seeds in %s\n", pyworker::fuzz::written, argv[1]);
  return 0;
}
