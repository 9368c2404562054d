// The lanes' framing (schema/lane-stream): one Cap'n Proto message each way, read whole into a
// reused buffer, with every way a peer can get it wrong refused by kind.

#include "lane-stream.h"

#include "pyworker.capnp.h"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <gtest/gtest.h>

#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <thread>

namespace pyworker {
namespace {

struct Pair {
  LaneStream ours;
  kj::AutoCloseFd theirs;
};

Pair makePair() {
  int fds[2];
  KJ_SYSCALL(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds));
  return {LaneStream(kj::AutoCloseFd(fds[0])), kj::AutoCloseFd(fds[1])};
}

void writeRaw(int fd, const void* bytes, size_t size) {
  ASSERT_EQ(write(fd, bytes, size), static_cast<ssize_t>(size));
}

kj::Array<capnp::word> replyWithData(size_t bytes) {
  capnp::MallocMessageBuilder message;
  auto reply = message.initRoot<rpc::LaneReply>();
  auto data = reply.initData(bytes);
  for (size_t i = 0; i < bytes; ++i) data[i] = static_cast<kj::byte>(i * 7);
  reply.initStatus().setErrno(0);
  return capnp::messageToFlatArray(message);
}

const auto NO_SPIN = std::chrono::microseconds(0);
const auto NO_DEADLINE = std::nullopt;

TEST(LaneStream, WritesAndReadsOneMessageEachWay) {
  int fds[2];
  KJ_SYSCALL(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds));
  LaneStream a{kj::AutoCloseFd(fds[0])}, b{kj::AutoCloseFd(fds[1])};
  for (int round = 0; round < 3; ++round) {
    capnp::MallocMessageBuilder call;
    auto root = call.initRoot<rpc::LaneCall>();
    root.setHandle(42 + round);
    root.setCount(4096);
    root.setPread();
    a.write(call);
    capnp::FlatArrayMessageReader reader(b.read(NO_DEADLINE, NO_SPIN));
    auto got = reader.getRoot<rpc::LaneCall>();
    EXPECT_EQ(got.getHandle(), 42u + round);
    EXPECT_EQ(got.getCount(), 4096u);
    EXPECT_TRUE(got.isPread());
  }
}

TEST(LaneStream, ReadsAMessageThatComesInPieces) {
  auto pair = makePair();
  auto words = replyWithData(100000);  // larger than one read, still within the buffer
  auto bytes = words.asBytes();
  std::thread writer([&]() {
    for (size_t at = 0; at < bytes.size(); at += 999) {
      writeRaw(pair.theirs.get(), bytes.begin() + at, std::min<size_t>(999, bytes.size() - at));
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  });
  auto read = pair.ours.read(NO_DEADLINE, std::chrono::microseconds(50));
  writer.join();
  ASSERT_EQ(read.size(), words.size());
  capnp::FlatArrayMessageReader reader(read, rpcReaderOptions());
  EXPECT_EQ(reader.getRoot<rpc::LaneReply>().getData().size(), 100000u);
}

TEST(LaneStream, ReadsAMessageLargerThanItsBuffer) {
  auto pair = makePair();
  auto words = replyWithData(3 * 1024 * 1024);
  std::thread writer([&]() {
    writeRaw(pair.theirs.get(), words.asBytes().begin(), words.asBytes().size());
  });
  auto read = pair.ours.read(NO_DEADLINE, NO_SPIN);
  writer.join();
  capnp::FlatArrayMessageReader reader(read, rpcReaderOptions());
  auto data = reader.getRoot<rpc::LaneReply>().getData();
  ASSERT_EQ(data.size(), 3u * 1024 * 1024);
  EXPECT_EQ(data[12345], static_cast<kj::byte>(12345 * 7));
}

TEST(LaneStream, EndOfFileIsClosed) {
  auto pair = makePair();
  pair.theirs = nullptr;
  try {
    pair.ours.read(NO_DEADLINE, NO_SPIN);
    FAIL() << "no error";
  } catch (const LaneError& e) {
    EXPECT_EQ(e.kind, LaneError::CLOSED);
  }
}

TEST(LaneStream, EndOfFileInsideAMessageIsClosed) {
  auto pair = makePair();
  auto words = replyWithData(1000);
  writeRaw(pair.theirs.get(), words.asBytes().begin(), words.asBytes().size() - 8);
  pair.theirs = nullptr;
  try {
    pair.ours.read(NO_DEADLINE, NO_SPIN);
    FAIL() << "no error";
  } catch (const LaneError& e) {
    EXPECT_EQ(e.kind, LaneError::CLOSED);
  }
}

TEST(LaneStream, NothingBeforeTheDeadlineIsTimedOut) {
  auto pair = makePair();
  auto start = std::chrono::steady_clock::now();
  try {
    pair.ours.read(start + std::chrono::milliseconds(30), std::chrono::microseconds(50));
    FAIL() << "no error";
  } catch (const LaneError& e) {
    EXPECT_EQ(e.kind, LaneError::TIMED_OUT);
  }
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(30));
}

TEST(LaneStream, ASegmentTableBeyondTheLimitIsMalformed) {
  auto pair = makePair();
  uint32_t table[2] = {0x7fffffff, 0};  // 2^31 segments
  writeRaw(pair.theirs.get(), table, sizeof(table));
  try {
    pair.ours.read(NO_DEADLINE, NO_SPIN);
    FAIL() << "no error";
  } catch (const LaneError& e) {
    EXPECT_EQ(e.kind, LaneError::MALFORMED);
  }
}

TEST(LaneStream, ASegmentBeyondTheLimitIsMalformed) {
  auto pair = makePair();
  uint32_t table[2] = {0, static_cast<uint32_t>(LaneStream::MAX_MESSAGE_WORDS)};
  writeRaw(pair.theirs.get(), table, sizeof(table));
  try {
    pair.ours.read(NO_DEADLINE, NO_SPIN);
    FAIL() << "no error";
  } catch (const LaneError& e) {
    EXPECT_EQ(e.kind, LaneError::MALFORMED);
  }
}

TEST(LaneStream, BytesAfterTheMessageAreMalformed) {
  auto pair = makePair();
  auto words = replyWithData(16);
  auto twice = kj::heapArray<kj::byte>(words.asBytes().size() * 2);
  memcpy(twice.begin(), words.asBytes().begin(), words.asBytes().size());
  memcpy(twice.begin() + words.asBytes().size(), words.asBytes().begin(), words.asBytes().size());
  writeRaw(pair.theirs.get(), twice.begin(), twice.size());
  try {
    pair.ours.read(NO_DEADLINE, NO_SPIN);
    FAIL() << "no error";
  } catch (const LaneError& e) {
    EXPECT_EQ(e.kind, LaneError::MALFORMED);
  }
}

TEST(LaneStream, WritingToAClosedLaneIsClosed) {
  auto pair = makePair();
  pair.theirs = nullptr;
  capnp::MallocMessageBuilder message;
  message.initRoot<rpc::LaneReply>().initStatus();
  try {
    pair.ours.write(message);
    FAIL() << "no error";
  } catch (const LaneError& e) {
    EXPECT_EQ(e.kind, LaneError::CLOSED);
  }
}

}  // namespace
}  // namespace pyworker
