// parseSize() against what nbdkit 1.32's nbdkit.parse_size() answered for the same strings
// (values and nbdkit_error() texts observed with `nbdkit -f python`).

#include "parse-size.h"

#include <gtest/gtest.h>

namespace pyworker {
namespace {

int64_t sizeOf(const char* text) {
  auto result = parseSize(text);
  auto* value = std::get_if<int64_t>(&result);
  EXPECT_NE(value, nullptr) << "'" << text << "' was refused: "
                            << std::get<ParseSizeError>(result).message;
  return value ? *value : -1;
}

std::string errorOf(const char* text) {
  auto result = parseSize(text);
  auto* error = std::get_if<ParseSizeError>(&result);
  EXPECT_NE(error, nullptr) << "'" << text << "' was accepted";
  return error ? error->message : "";
}

TEST(ParseSize, AcceptsWhatNbdkitAccepts) {
  EXPECT_EQ(sizeOf("0"), 0);
  EXPECT_EQ(sizeOf("1"), 1);
  EXPECT_EQ(sizeOf("7k"), 7168);
  EXPECT_EQ(sizeOf("7K"), 7168);
  EXPECT_EQ(sizeOf("17M"), 17825792);
  EXPECT_EQ(sizeOf("1G"), 1073741824);
  EXPECT_EQ(sizeOf("1T"), 1099511627776);
  EXPECT_EQ(sizeOf("1P"), 1125899906842624);
  EXPECT_EQ(sizeOf("1E"), 1152921504606846976);
  EXPECT_EQ(sizeOf("2e"), 2305843009213693952);
  EXPECT_EQ(sizeOf("1b"), 1);
  EXPECT_EQ(sizeOf("1s"), 512);
  EXPECT_EQ(sizeOf("  12"), 12);
  EXPECT_EQ(sizeOf("010"), 10);
  EXPECT_EQ(sizeOf("+5"), 5);
  EXPECT_EQ(sizeOf("-0"), 0);
  EXPECT_EQ(sizeOf("9223372036854775807"), INT64_MAX);
}

TEST(ParseSize, RefusesWithNbdkitsMessages) {
  EXPECT_EQ(errorOf("8E"), "overflow computing size (8E)");
  EXPECT_EQ(errorOf("9E"), "overflow computing size (9E)");
  EXPECT_EQ(errorOf("1kB"), "could not parse size: unknown suffix 'kB'");
  EXPECT_EQ(errorOf("1KiB"), "could not parse size: unknown suffix 'KiB'");
  EXPECT_EQ(errorOf("-1"), "size cannot be negative (-1)");
  EXPECT_EQ(errorOf("abc"), "could not parse size string (abc)");
  EXPECT_EQ(errorOf(""), "could not parse size string ()");
  EXPECT_EQ(errorOf("12 "), "could not parse size: unknown suffix ' '");
  EXPECT_EQ(errorOf("0x10"), "could not parse size: unknown suffix 'x10'");
  EXPECT_EQ(errorOf("1.5M"), "could not parse size: unknown suffix '.5M'");
  EXPECT_EQ(errorOf("1e3"), "could not parse size: unknown suffix 'e3'");
  EXPECT_EQ(errorOf("9223372036854775808"),
            "size (9223372036854775808) exceeds maximum value");
  EXPECT_EQ(errorOf("18446744073709551616"),
            "size (18446744073709551616) exceeds maximum value");
  EXPECT_EQ(errorOf("-9223372036854775809"), "size cannot be negative (-9223372036854775809)");
  EXPECT_EQ(errorOf("1Z"), "could not parse size: unknown suffix 'Z'");
  EXPECT_EQ(errorOf("k"), "could not parse size string (k)");
  EXPECT_EQ(errorOf("1kk"), "could not parse size: unknown suffix 'kk'");
  EXPECT_EQ(errorOf("1E "), "could not parse size: unknown suffix 'E '");
}

}  // namespace
}  // namespace pyworker
