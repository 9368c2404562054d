// The protocol's reader limits (schema/rpc-limits.h) against its deepest messages, over a real
// two-party connection: enough for every field the schema has, and not one level more.

#include "rpc-limits.h"

#include "pyworker.capnp.h"

#include <capnp/rpc-twoparty.h>
#include <capnp/serialize.h>
#include <kj/async-io.h>

#include <gtest/gtest.h>

#include <string>

namespace pyworker {
namespace {

class DeepWorker final: public rpc::Worker::Server {
  // Answers with the deepest replies there are; records the deepest request field it read.
public:
  explicit DeepWorker(std::string& seen): seen(seen) {}

protected:
  kj::Promise<void> defaultExport(DefaultExportContext context) override {
    auto name = context.getParams().getContext().getExportName().asChars();
    seen.assign(name.begin(), name.size());
    auto status = context.getResults().initStatus();
    status.setErrno(5);
    status.setMessage("default_export failed on purpose");
    return kj::READY_NOW;
  }
  kj::Promise<void> listExports(ListExportsContext context) override {
    auto results = context.getResults();
    results.initStatus().setMessage("status text");
    auto exports = results.initExports(1);
    exports[0].setName("name");
    exports[0].setDescription("description");
    exports[0].setHasDescription(true);
    return kj::READY_NOW;
  }

private:
  std::string& seen;
};

struct Received {
  std::string exportName;   // read by the worker's side
  std::string failure;      // read by the plugin's side from here on
  std::string statusText;
  std::string name;
  std::string description;
};

capnp::ReaderOptions withNesting(int nesting) {
  auto options = rpcReaderOptions();
  options.nestingLimit = nesting;
  return options;
}

Received exchange(capnp::ReaderOptions workerSide, capnp::ReaderOptions pluginSide) {
  auto io = kj::setupAsyncIo();
  auto pipe = io.provider->newTwoWayPipe();
  Received received;
  capnp::TwoPartyVatNetwork workerNetwork(*pipe.ends[0], capnp::rpc::twoparty::Side::SERVER,
                                          workerSide);
  auto server = capnp::makeRpcServer(
      workerNetwork, rpc::Worker::Client(kj::heap<DeepWorker>(received.exportName)));
  capnp::TwoPartyVatNetwork pluginNetwork(*pipe.ends[1], capnp::rpc::twoparty::Side::CLIENT,
                                          pluginSide);
  auto client = capnp::makeRpcClient(pluginNetwork);
  capnp::MallocMessageBuilder vatIdMessage;
  auto vatId = vatIdMessage.initRoot<capnp::rpc::twoparty::VatId>();
  vatId.setSide(capnp::rpc::twoparty::Side::SERVER);
  auto worker = client.bootstrap(vatId).castAs<rpc::Worker>();

  auto request = worker.defaultExportRequest();
  request.initContext().setExportName(kj::StringPtr("the export").asBytes());
  auto answered = request.send().wait(io.waitScope);
  received.failure = answered.getStatus().getMessage();

  auto list = worker.listExportsRequest().send().wait(io.waitScope);
  received.statusText = list.getStatus().getMessage();
  auto exports = list.getExports();
  received.name = exports[0].getName();
  received.description = exports[0].getDescription();
  return received;
}

TEST(RpcLimits, TheDeepestMessagesPass) {
  auto received = exchange(rpcReaderOptions(), rpcReaderOptions());
  EXPECT_EQ(received.exportName, "the export");
  EXPECT_EQ(received.failure, "default_export failed on purpose");
  EXPECT_EQ(received.statusText, "status text");
  EXPECT_EQ(received.name, "name");
  EXPECT_EQ(received.description, "description");
}

TEST(RpcLimits, OneLevelLessBreaksListExports) {
  // The names in list_exports' reply are the deepest fields there are.
  EXPECT_THROW(exchange(rpcReaderOptions(), withNesting(NESTING_LIMIT - 1)), kj::Exception);
}

TEST(RpcLimits, LaneMessagesFitWellWithin) {
  // Lanes read with the same limits (lane-stream.h). Their deepest fields: a Host call's text
  // in a reply (LaneReply -> hostCalls -> HostCall -> debug), the shared range of a call and
  // open's connection context.
  capnp::MallocMessageBuilder replyMessage;
  auto reply = replyMessage.initRoot<rpc::LaneReply>();
  reply.initStatus().setMessage("status text");
  reply.initHostCalls(1)[0].setDebug("a debug line");
  reply.initExtents(1)[0].setLength(4096);
  auto replyWords = capnp::messageToFlatArray(replyMessage);
  capnp::FlatArrayMessageReader replyReader(replyWords, withNesting(NESTING_LIMIT - 2));
  EXPECT_EQ(replyReader.getRoot<rpc::LaneReply>().getHostCalls()[0].getDebug(), "a debug line");

  capnp::MallocMessageBuilder callMessage;
  auto call = callMessage.initRoot<rpc::LaneCall>();
  call.initShared().setLength(65536);
  call.setData(kj::StringPtr("payload").asBytes());
  call.initContext().setExportName(kj::StringPtr("the export").asBytes());  // open's
  auto callWords = capnp::messageToFlatArray(callMessage);
  capnp::FlatArrayMessageReader callReader(callWords, withNesting(NESTING_LIMIT - 2));
  EXPECT_EQ(callReader.getRoot<rpc::LaneCall>().getShared().getLength(), 65536u);
  EXPECT_EQ(callReader.getRoot<rpc::LaneCall>().getContext().getExportName().size(), 10u);
}

}  // namespace
}  // namespace pyworker
