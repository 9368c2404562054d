// BreakpointPause: when a call whose deadline has passed may wait on (pdb=on).

#include <gtest/gtest.h>

#include <thread>

#include "breakpoint-pause.h"

namespace pyworker {
namespace {

using namespace std::chrono_literals;
using Clock = BreakpointPause::Clock;

TEST(BreakpointPause, NothingWaitsNothingIsPutOff) {
  BreakpointPause pause(true);
  EXPECT_FALSE(pause.laterDeadline(1000ms));
}

TEST(BreakpointPause, AWaitingBreakpointPutsTheDeadlineOff) {
  BreakpointPause pause(true);
  EXPECT_TRUE(pause.waits());
  auto before = Clock::now();
  auto later = pause.laterDeadline(1000ms);
  ASSERT_TRUE(later);
  EXPECT_GE(*later, before + 1000ms);  // asked again then
  EXPECT_TRUE(pause.waits());          // a second one, on another thread
  pause.resumed();
  EXPECT_TRUE(pause.laterDeadline(1000ms)) << "one still waits";
}

TEST(BreakpointPause, AResumedRequestGetsItsWholeTimeAgain) {
  BreakpointPause pause(true);
  pause.waits();
  pause.resumed();
  auto resumed = Clock::now();
  auto later = pause.laterDeadline(1000ms);
  ASSERT_TRUE(later);
  EXPECT_LE(*later, resumed + 1000ms);
  EXPECT_GT(*later, resumed + 900ms);
  std::this_thread::sleep_for(20ms);
  EXPECT_FALSE(pause.laterDeadline(10ms)) << "ended longer ago than the limit";
}

TEST(BreakpointPause, IgnoredUnlessPdbIsOn) {
  BreakpointPause pause(false);
  EXPECT_FALSE(pause.waits());
  pause.resumed();
  EXPECT_FALSE(pause.laterDeadline(1000ms));
}

TEST(BreakpointPause, AResumeWithoutAWaitChangesNothing) {
  BreakpointPause pause(true);
  pause.resumed();
  EXPECT_FALSE(pause.laterDeadline(1000ms));
}

}  // namespace
}  // namespace pyworker
