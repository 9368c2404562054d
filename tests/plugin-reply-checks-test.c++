// The checks the plugin applies to a worker's replies (plugin/reply-checks.h): what passes,
// what fails, and whom a failure blames (the script: request fails; the worker: replaced).

#include <errno.h>
#include <gtest/gtest.h>

#include <string>

#include "reply-checks.h"

namespace pyworker {
namespace {

template <typename Check>
std::string blame(Check&& check) {
  // "ok", "script: <message>" or "worker: <message>".
  try {
    check();
    return "ok";
  } catch (const BadReply& e) {
    return std::string(e.blame == BadReply::WORKER ? "worker: " : "script: ") + e.what();
  }
}

bool blames(const std::string& outcome, const char* who) { return outcome.rfind(who, 0) == 0; }

TEST(ReplyChecks, PreadSizeMustEqualCount) {
  EXPECT_EQ(blame([] { checkPreadSize(512, 512); }), "ok");
  EXPECT_EQ(blame([] { checkPreadSize(0, 0); }), "ok");
  EXPECT_EQ(blame([] { checkPreadSize(511, 512); }),
            "worker: invalid reply from the worker: pread returned 511 bytes, expected 512");
  EXPECT_TRUE(blames(blame([] { checkPreadSize(513, 512); }), "worker"));
  EXPECT_TRUE(blames(blame([] { checkPreadSize(0, 1); }), "worker"));
  EXPECT_TRUE(blames(blame([] { checkPreadSize(size_t{1} << 33, 0xffffffff); }), "worker"));
}

TEST(ReplyChecks, QueryAnswersInRange) {
  EXPECT_EQ(blame([] { checkQueryAnswer("can_write", 0, 1); }), "ok");
  EXPECT_EQ(blame([] { checkQueryAnswer("can_write", 1, 1); }), "ok");
  EXPECT_EQ(blame([] { checkQueryAnswer("can_fua", 2, 2); }), "ok");
  EXPECT_EQ(blame([] { checkQueryAnswer("can_write", 2, 1); }),
            "worker: invalid reply from the worker: can_write answered 2");
  EXPECT_TRUE(blames(blame([] { checkQueryAnswer("can_cache", -1, 2); }), "worker"));
  EXPECT_TRUE(blames(blame([] { checkQueryAnswer("can_cache", INT32_MIN, 2); }), "worker"));
  EXPECT_TRUE(blames(blame([] { checkQueryAnswer("can_cache", INT32_MAX, 2); }), "worker"));
}

TEST(ReplyChecks, SizeAndThreadModel) {
  EXPECT_EQ(blame([] { checkSize(0); }), "ok");
  EXPECT_EQ(blame([] { checkSize(INT64_MAX); }), "ok");
  EXPECT_TRUE(blames(blame([] { checkSize(-1); }), "worker"));
  EXPECT_TRUE(blames(blame([] { checkSize(INT64_MIN); }), "worker"));
  for (int model = 0; model <= 3; ++model) {
    EXPECT_EQ(blame([&] { checkThreadModel(model); }), "ok");
  }
  EXPECT_TRUE(blames(blame([] { checkThreadModel(4); }), "worker"));
  EXPECT_TRUE(blames(blame([] { checkThreadModel(-1); }), "worker"));
}

TEST(ReplyChecks, TextIsUtf8WithoutNulAndBounded) {
  EXPECT_EQ(blame([] { checkText("", "export name"); }), "ok");
  EXPECT_EQ(blame([] { checkText("disk-1", "export name"); }), "ok");
  EXPECT_EQ(blame([] { checkText("d\xc3\xa9j\xc3\xa0 \xe2\x82\xac \xf0\x9f\x92\xbe", "x"); }),
            "ok");
  EXPECT_EQ(blame([] { checkText(std::string(MAX_NAME_BYTES, 'a'), "x"); }), "ok");
  EXPECT_EQ(blame([] { checkText(std::string(MAX_NAME_BYTES + 1, 'a'), "export name"); }),
            "script: invalid reply from the worker: export name is too long (4097 bytes, at "
            "most 4096)");
  EXPECT_EQ(blame([] { checkText(std::string("a\0b", 3), "export name"); }),
            "script: invalid reply from the worker: export name contains a NUL byte");
  // Not UTF-8: a stray continuation byte, a truncated sequence, an overlong form, a surrogate,
  // past U+10FFFF, bytes that never occur.
  for (const char* bad : {"\x80", "a\xc3", "\xe2\x82", "\xc0\xaf", "\xe0\x80\xaf",
                          "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xff", "\xfe", "ok\xf8\x88\x80\x80\x80"}) {
    EXPECT_EQ(blame([&] { checkText(bad, "export name"); }),
              "worker: invalid reply from the worker: export name is not valid UTF-8")
        << bad;
  }
  // Edges that are valid: U+007F, U+0080, U+07FF, U+0800, U+FFFF, U+10000, U+10FFFF.
  for (const char* good : {"\x7f", "\xc2\x80", "\xdf\xbf", "\xe0\xa0\x80", "\xef\xbf\xbf",
                           "\xf0\x90\x80\x80", "\xf4\x8f\xbf\xbf"}) {
    EXPECT_EQ(blame([&] { checkText(good, "x"); }), "ok") << good;
  }
}

TEST(ReplyChecks, ExportCountBounded) {
  EXPECT_EQ(blame([] { checkExportCount(0); }), "ok");
  EXPECT_EQ(blame([] { checkExportCount(MAX_EXPORTS); }), "ok");
  EXPECT_EQ(blame([] { checkExportCount(MAX_EXPORTS + 1); }),
            "script: invalid reply from the worker: list_exports returned 10001 exports, at "
            "most 10000");
}

TEST(ReplyChecks, ExtentCount) {
  EXPECT_EQ(blame([] { checkExtentCount(1); }), "ok");
  EXPECT_EQ(blame([] { checkExtentCount(MAX_EXTENTS); }), "ok");
  EXPECT_TRUE(blames(blame([] { checkExtentCount(0); }), "worker"));
  EXPECT_TRUE(blames(blame([] { checkExtentCount(MAX_EXTENTS + 1); }), "worker"));
}

TEST(ReplyChecks, ExtentsAscendContiguousAndTyped) {
  using V = std::vector<ExtentEntry>;
  EXPECT_EQ(blame([] { checkExtents(V{{0, 4096, 0}}); }), "ok");
  EXPECT_EQ(blame([] { checkExtents(V{{0, 4096, 1}, {4096, 0, 3}, {4096, 8192, 2}}); }), "ok");
  // Before or beyond the request is nbdkit's to clip, as for nbdkit python.
  EXPECT_EQ(blame([] { checkExtents(V{{0, UINT64_MAX, 0}}); }), "ok");
  EXPECT_EQ(blame([] { checkExtents(V{{UINT64_MAX - 1, 1, 0}}); }), "ok");
  // Any type: nbdkit sends type & 3 (nbdkit python passes 4 or 2**32 + 3 truncated on).
  EXPECT_EQ(blame([] { checkExtents(V{{0, 4096, 4}}); }), "ok");
  EXPECT_EQ(blame([] { checkExtents(V{{0, 4096, UINT32_MAX}}); }), "ok");
  EXPECT_EQ(blame([] { checkExtents(V{{0, 4096, 0}, {8192, 4096, 0}}); }),
            "script: invalid reply from the worker: extent 1 (8192, 4096, 0) does not start "
            "where the previous one ended (extents must be contiguous, in ascending order)");
  EXPECT_TRUE(blames(blame([] { checkExtents(V{{4096, 4096, 0}, {0, 4096, 0}}); }), "script"));
  EXPECT_TRUE(blames(blame([] { checkExtents(V{{0, 4096, 0}, {2048, 4096, 0}}); }), "script"));
  // Past 2^64: nbdkit's arithmetic wraps, and so does the contiguity check.
  EXPECT_EQ(blame([] { checkExtents(V{{UINT64_MAX, 2, 0}}); }), "ok");
  EXPECT_EQ(blame([] { checkExtents(V{{0, 4096, 1}, {4096, UINT64_MAX, 0}}); }), "ok");
  EXPECT_EQ(blame([] { checkExtents(V{{UINT64_MAX - 1, 2, 0}, {0, 1, 0}}); }), "ok");
  EXPECT_TRUE(blames(blame([] { checkExtents(V{{UINT64_MAX - 1, 2, 0}, {1, 1, 0}}); }),
                     "script"));
}

TEST(ReplyChecks, ErrnoRange) {
  EXPECT_EQ(errnoFromReply(0), 0);
  EXPECT_EQ(errnoFromReply(EPERM), EPERM);
  EXPECT_EQ(errnoFromReply(ENOSPC), ENOSPC);
  EXPECT_EQ(errnoFromReply(MAX_ERRNO), MAX_ERRNO);
  EXPECT_EQ(errnoFromReply(MAX_ERRNO + 1), EIO);
  EXPECT_EQ(errnoFromReply(-5), EIO);
  EXPECT_EQ(errnoFromReply(INT32_MIN), EIO);
  EXPECT_EQ(errnoFromReply(INT32_MAX), EIO);
}

}  // namespace
}  // namespace pyworker
