// plugin/lane-pool: lanes are lent one call at a time, reused most recent first, and offered
// to the worker only when none is idle.

#include "lane-pool.h"

#include <gtest/gtest.h>
#include <kj/debug.h>

#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <optional>
#include <thread>

namespace pyworker {
namespace {

class LanePoolTest : public ::testing::Test {
protected:
  LanePoolTest() {
    int fds[2];
    KJ_SYSCALL(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds));
    ours = kj::AutoCloseFd(fds[0]);
    worker = kj::AutoCloseFd(fds[1]);
  }
  ~LanePoolTest() noexcept override {}  // kj::AutoCloseFd's destructor may throw; not here

  int offered() {
    // How many lanes the pool has offered the "worker" so far (each is received and closed).
    int count = 0;
    for (;;) {
      char byte;
      iovec data = {&byte, 1};
      alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
      msghdr m{};
      m.msg_iov = &data;
      m.msg_iovlen = 1;
      m.msg_control = control;
      m.msg_controllen = sizeof(control);
      if (recvmsg(worker.get(), &m, MSG_DONTWAIT) != 1) return count;
      EXPECT_EQ(byte, 'L');
      cmsghdr* c = CMSG_FIRSTHDR(&m);
      EXPECT_NE(c, nullptr);
      if (c == nullptr) return count;
      EXPECT_EQ(c->cmsg_type, SCM_RIGHTS);
      int fd;
      memcpy(&fd, CMSG_DATA(c), sizeof(int));
      close(fd);
      ++count;
    }
  }

  kj::AutoCloseFd receiveOffer() {
    // The worker's end of the next lane offered, kept open (as a process that outlived the
    // worker would keep its copy).
    char byte;
    iovec data = {&byte, 1};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
    msghdr m{};
    m.msg_iov = &data;
    m.msg_iovlen = 1;
    m.msg_control = control;
    m.msg_controllen = sizeof(control);
    KJ_ASSERT(recvmsg(worker.get(), &m, 0) == 1);
    int fd;
    memcpy(&fd, CMSG_DATA(CMSG_FIRSTHDR(&m)), sizeof(int));
    return kj::AutoCloseFd(fd);
  }

  kj::AutoCloseFd ours, worker;
};

TEST_F(LanePoolTest, OffersALaneOnlyWhenNoneIsIdle) {
  LanePool pool(ours.get());
  LanePool::Lane* first;
  {
    auto lane = pool.acquire();
    first = &*lane;
    EXPECT_EQ(offered(), 1);
  }
  {
    auto again = pool.acquire();  // given back: the same one
    EXPECT_EQ(&*again, first);
    auto second = pool.acquire();  // the first is lent: a new one
    EXPECT_NE(&*second, first);
    EXPECT_EQ(offered(), 1);
  }
  auto a = pool.acquire();
  auto b = pool.acquire();
  EXPECT_EQ(offered(), 0);  // two idle lanes were there
}

TEST_F(LanePoolTest, MostRecentlyReturnedFirst) {
  LanePool pool(ours.get());
  LanePool::Lane* later;
  {
    auto a = pool.acquire();
    auto b = pool.acquire();
    later = &*a;  // a is given back after b (reverse order of destruction)
  }
  EXPECT_EQ(&*pool.acquire(), later);
}

TEST_F(LanePoolTest, ADiscardedLaneIsNotLentAgain) {
  LanePool pool(ours.get());
  {
    auto lane = pool.acquire();
    lane.discard();
  }
  EXPECT_EQ(offered(), 1);
  auto fresh = pool.acquire();
  EXPECT_EQ(offered(), 1);
}

TEST_F(LanePoolTest, AGoneWorkerIsDisconnected) {
  LanePool pool(ours.get());
  worker = nullptr;
  try {
    pool.acquire();
    FAIL() << "no error";
  } catch (const kj::Exception& e) {
    EXPECT_EQ(e.getType(), kj::Exception::Type::DISCONNECTED);
  }
}

TEST_F(LanePoolTest, PastTheLimitACallerWaitsForALaneToComeBack) {
  LanePool pool(ours.get(), 2);
  auto a = std::make_optional(pool.acquire());
  auto b = pool.acquire();
  EXPECT_EQ(offered(), 2);
  LanePool::Lane* first = &**a;
  std::atomic<LanePool::Lane*> got{nullptr};
  std::thread waiter([&]() { got = &*pool.acquire(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(got.load(), nullptr);  // still waiting: no third lane
  a.reset();                       // given back: the waiter gets it
  waiter.join();
  EXPECT_EQ(got.load(), first);
  EXPECT_EQ(offered(), 0);
  EXPECT_EQ(pool.lanes(), 2u);
}

TEST_F(LanePoolTest, ADiscardedLaneMakesRoomForANewOne) {
  LanePool pool(ours.get(), 1);
  auto a = std::make_optional(pool.acquire());
  std::atomic<bool> done{false};
  std::thread waiter([&]() {
    auto lane = pool.acquire();
    done = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(done.load());
  a->discard();
  waiter.join();
  EXPECT_TRUE(done.load());
  EXPECT_EQ(offered(), 2);  // the discarded one and its replacement
  EXPECT_EQ(pool.lanes(), 1u);
  a.reset();  // destroying a discarded lease gives nothing back
  EXPECT_EQ(pool.lanes(), 1u);
}

TEST_F(LanePoolTest, HangUpEndsAWaitingCallAndRefusesNewLanes) {
  LanePool pool(ours.get(), 1);
  auto lease = std::make_optional(pool.acquire());
  auto workerEnd = receiveOffer();  // held open: no EOF comes from the peer
  std::atomic<bool> readEnded{false}, acquireEnded{false};
  std::thread caller([&]() {
    try {
      (*lease)->stream.read(std::nullopt, std::chrono::microseconds(0));
    } catch (...) {
    }
    readEnded = true;
  });
  std::thread waiter([&]() {  // past the limit, waiting for the lane to come back
    EXPECT_THROW(pool.acquire(), kj::Exception);
    acquireEnded = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_FALSE(readEnded.load());
  EXPECT_FALSE(acquireEnded.load());
  pool.hangUp();
  caller.join();
  waiter.join();
  EXPECT_TRUE(readEnded.load());
  EXPECT_TRUE(acquireEnded.load());
  lease->discard();
  try {
    pool.acquire();
    FAIL() << "a lane after hangUp()";
  } catch (const kj::Exception& e) {
    EXPECT_EQ(e.getType(), kj::Exception::Type::DISCONNECTED);
  }
}

TEST_F(LanePoolTest, AFailedOfferTakesNoRoom) {
  LanePool pool(ours.get(), 1);
  worker = nullptr;
  for (int i = 0; i < 3; ++i) EXPECT_THROW(pool.acquire(), kj::Exception);
  EXPECT_EQ(pool.lanes(), 0u);
}

}  // namespace
}  // namespace pyworker
