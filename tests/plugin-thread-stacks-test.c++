// plugin/thread-stacks.h: which stack size nbdkit's threads get, and that threads started
// afterwards really have it.
#include <gtest/gtest.h>

#include <pthread.h>

#include <algorithm>
#include <thread>

#include "thread-stacks.h"

using pyworker::chooseThreadStack;
using pyworker::DEFAULT_THREAD_STACK;
using pyworker::setDefaultThreadStack;

namespace {

constexpr size_t MiB = 1024 * 1024;

size_t stackOfANewThread() {
  size_t size = 0;
  std::thread([&] {
    pthread_attr_t attributes;
    ASSERT_EQ(pthread_getattr_np(pthread_self(), &attributes), 0);
    ASSERT_EQ(pthread_attr_getstacksize(&attributes, &size), 0);
    pthread_attr_destroy(&attributes);
  }).join();
  return size;
}

}  // namespace

TEST(PluginThreadStacks, DefaultIsOneMebibyteUnlessSmallerAlready) {
  EXPECT_EQ(DEFAULT_THREAD_STACK, 1 * MiB);
  EXPECT_EQ(chooseThreadStack(std::nullopt, 8 * MiB), 1 * MiB);
  EXPECT_EQ(chooseThreadStack(std::nullopt, 512 * 1024), 512 * 1024u);  // a lower ulimit -s
}

TEST(PluginThreadStacks, GivenSizeWinsEitherWay) {
  EXPECT_EQ(chooseThreadStack(8 * MiB, 1 * MiB), 8 * MiB);
  EXPECT_EQ(chooseThreadStack(256 * 1024, 8 * MiB), 256 * 1024u);
}

TEST(PluginThreadStacks, ThreadsStartedAfterwardsHaveIt) {
  // Smaller first: glibc may give a new thread a larger stack it keeps for reuse.
  auto change = setDefaultThreadStack(std::nullopt);
  EXPECT_EQ(change.after, std::min(change.before, 1 * MiB));
  EXPECT_EQ(stackOfANewThread(), change.after);
  change = setDefaultThreadStack(2 * MiB);
  EXPECT_EQ(change.after, 2 * MiB);
  EXPECT_EQ(stackOfANewThread(), 2 * MiB);
}
