#pragma once
// The plugin's end of a worker connection, bounded: whatever a worker sends, the plugin holds
// only so much on its behalf. Cap'n Proto 0.9.2 alone does not bound it: every outgoing
// message waits in memory until the socket takes it, and an answer stays in memory until the
// caller finishes it; its flow limit (RpcSystem::setFlowLimit, also set) counts a call only
// until its return is queued. So a runaway worker that calls Host.debug() in a loop and never
// reads the replies, or never finishes its calls, would grow the plugin without end.
//
// - While a message to the worker is still being written (the worker is not reading), nothing
//   more is read from it: its calls wait in its own memory, not in nbdkit's.
// - A worker with more than MAX_UNFINISHED_CALLS calls to the plugin it has not finished
//   breaks the protocol: it is logged and the connection fails, as for any other broken
//   worker (its requests fail, the next connection gets a new worker).

#include <capnp/serialize-async.h>
#include <kj/async-io.h>

#include <stdint.h>

#include <string>
#include <unordered_set>

namespace pyworker {

constexpr size_t MAX_UNFINISHED_CALLS = 16384;
// A correct worker keeps at most 1024 Host calls unanswered (worker/host-link.h) and finishes
// each as soon as its return arrives; 16 times that is room to spare, and ~5 MB of answers.

class BoundedMessageStream final: public capnp::MessageStream {
public:
  BoundedMessageStream(kj::AsyncIoStream& stream, std::string identity)
      : inner(stream), identity(kj::mv(identity)) {}
  // `identity` ("pyworker[PID]") names the worker when it is cut off.
  KJ_DISALLOW_COPY(BoundedMessageStream);

  kj::Promise<kj::Maybe<capnp::MessageReaderAndFds>> tryReadMessage(
      kj::ArrayPtr<kj::AutoCloseFd> fdSpace, capnp::ReaderOptions options,
      kj::ArrayPtr<capnp::word> scratchSpace) override;
  kj::Promise<void> writeMessage(kj::ArrayPtr<const int> fds,
                                 kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments)
      override;
  kj::Promise<void> writeMessages(
      kj::ArrayPtr<kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>>> messages) override;
  kj::Maybe<int> getSendBufferSize() override { return inner.getSendBufferSize(); }
  kj::Promise<void> end() override { return inner.end(); }

private:
  kj::Promise<void> writing(kj::Promise<void> write);
  kj::Promise<void> untilWritten();
  void account(capnp::MessageReader& message);

  capnp::AsyncIoMessageStream inner;
  std::string identity;
  size_t writesPending = 0;
  kj::Maybe<kj::Own<kj::PromiseFulfiller<void>>> readerWaiting;
  std::unordered_set<uint32_t> unfinished;  // question ids of the worker's calls to us
};

}  // namespace pyworker
