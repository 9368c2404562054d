// SharedArena: ranges handed out once at a time, given back on release, none when full.

#include <gtest/gtest.h>

#include <vector>

#include "shared-arena.h"

namespace pyworker {
namespace {

TEST(SharedArena, RangesDoNotOverlapAndComeBack) {
  std::vector<kj::byte> memory(16 * 1024);
  SharedArena arena(memory.data(), memory.size(), 1024);
  auto a = arena.lease(1);
  auto b = arena.lease(3000);  // 3 units
  ASSERT_TRUE(a);
  ASSERT_TRUE(b);
  EXPECT_EQ(a.offset(), 0u);
  EXPECT_EQ(b.offset(), 1024u);
  EXPECT_EQ(b.data(), memory.data() + 1024);
  auto rest = arena.lease(12 * 1024);
  ASSERT_TRUE(rest);
  EXPECT_EQ(rest.offset(), 4096u);
  EXPECT_FALSE(arena.lease(1)) << "the arena is full";
  a = SharedArena::Lease();  // given back
  auto again = arena.lease(1000);
  ASSERT_TRUE(again);
  EXPECT_EQ(again.offset(), 0u);
}

TEST(SharedArena, TooLargeOrFragmentedIsEmptyNotAnError) {
  std::vector<kj::byte> memory(8 * 1024);
  SharedArena arena(memory.data(), memory.size(), 1024);
  EXPECT_FALSE(arena.lease(9 * 1024));
  auto first = arena.lease(1024);
  auto second = arena.lease(1024);
  auto third = arena.lease(1024);
  { auto moved = std::move(second); }  // a hole of one unit at 1024
  EXPECT_FALSE(arena.lease(6 * 1024)) << "5 free units after, 1 in the hole: no 6 in a row";
  auto hole = arena.lease(1024);
  ASSERT_TRUE(hole);
  EXPECT_EQ(hole.offset(), 1024u);
}

}  // namespace
}  // namespace pyworker
