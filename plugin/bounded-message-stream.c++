#include "bounded-message-stream.h"

#include <capnp/rpc.capnp.h>
#include <kj/debug.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

namespace pyworker {

kj::Promise<void> BoundedMessageStream::writing(kj::Promise<void> write) {
  ++writesPending;
  return write.then(
      [this]() {
        if (--writesPending == 0) {
          KJ_IF_MAYBE(waiter, readerWaiting) {
            (*waiter)->fulfill();
            readerWaiting = nullptr;
          }
        }
      },
      [this](kj::Exception&& exception) {
        // The connection is failing anyway; let the reader see it too.
        --writesPending;
        KJ_IF_MAYBE(waiter, readerWaiting) {
          (*waiter)->fulfill();
          readerWaiting = nullptr;
        }
        kj::throwFatalException(kj::mv(exception));
      });
}

kj::Promise<void> BoundedMessageStream::untilWritten() {
  KJ_REQUIRE(readerWaiting == nullptr, "one reader at a time");
  auto paf = kj::newPromiseAndFulfiller<void>();
  readerWaiting = kj::mv(paf.fulfiller);
  return kj::mv(paf.promise);
}

kj::Promise<kj::Maybe<capnp::MessageReaderAndFds>> BoundedMessageStream::tryReadMessage(
    kj::ArrayPtr<kj::AutoCloseFd> fdSpace, capnp::ReaderOptions options,
    kj::ArrayPtr<capnp::word> scratchSpace) {
  auto read = [this, fdSpace, options, scratchSpace]() {
    return inner.tryReadMessage(fdSpace, options, scratchSpace);
  };
  // The usual case, nothing being written, costs no extra turn of the event loop.
  auto message = writesPending == 0 ? read() : untilWritten().then(kj::mv(read));
  return message.then([this](kj::Maybe<capnp::MessageReaderAndFds>&& message) {
    KJ_IF_MAYBE(m, message) account(*m->reader);
    return kj::mv(message);
  });
}

void BoundedMessageStream::account(capnp::MessageReader& message) {
  auto root = message.getRoot<capnp::rpc::Message>();
  switch (root.which()) {
  case capnp::rpc::Message::CALL:
    unfinished.insert(root.getCall().getQuestionId());
    break;
  case capnp::rpc::Message::BOOTSTRAP:
    unfinished.insert(root.getBootstrap().getQuestionId());
    break;
  case capnp::rpc::Message::FINISH:
    unfinished.erase(root.getFinish().getQuestionId());
    break;
  default:
    break;
  }
  if (unfinished.size() > MAX_UNFINISHED_CALLS) {
    nbdkit_error("%s: runaway worker: more than %zu calls to the plugin that it never "
                 "finished; disconnecting it", identity.c_str(), MAX_UNFINISHED_CALLS);
    KJ_FAIL_REQUIRE("runaway worker: too many unfinished calls", MAX_UNFINISHED_CALLS);
  }
}

kj::Promise<void> BoundedMessageStream::writeMessage(
    kj::ArrayPtr<const int> fds, kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments) {
  return writing(inner.writeMessage(fds, segments));
}

kj::Promise<void> BoundedMessageStream::writeMessages(
    kj::ArrayPtr<kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>>> messages) {
  return writing(inner.writeMessages(messages));
}

}  // namespace pyworker
