// parseProbability() against nbdkit_parse_probability() of nbdkit 1.42.3 (server/public.c): the
// cases of nbdkit's own server/test-public.c, then more, with the values and nbdkit_error() texts
// that nbdkit's function gave for the same strings when compiled beside ours.

#include "parse-probability.h"

#include <gtest/gtest.h>

namespace pyworker {
namespace {

double probabilityOf(const char* text) {
  auto result = parseProbability("p", text);
  auto* value = std::get_if<double>(&result);
  EXPECT_NE(value, nullptr) << "'" << text << "' was refused: "
                            << std::get<ParseProbabilityError>(result).message;
  return value ? *value : -1;
}

std::string errorOf(const char* text) {
  auto result = parseProbability("p", text);
  auto* error = std::get_if<ParseProbabilityError>(&result);
  EXPECT_NE(error, nullptr) << "'" << text << "' was accepted as "
                            << std::get<double>(result);
  return error ? error->message : "";
}

TEST(ParseProbability, AcceptsWhatNbdkitAccepts) {
  // Numbers, also above 1.
  EXPECT_EQ(probabilityOf("0"), 0);
  EXPECT_EQ(probabilityOf("1"), 1);
  EXPECT_EQ(probabilityOf("2"), 2);
  EXPECT_EQ(probabilityOf("0.1"), 0.1);
  EXPECT_EQ(probabilityOf("0.9"), 0.9);
  EXPECT_EQ(probabilityOf("1.0000"), 1);
  EXPECT_EQ(probabilityOf("1e-1"), 0.1);
  EXPECT_EQ(probabilityOf("1e-8"), 1e-8);
  EXPECT_EQ(probabilityOf("0x1p-3"), 0.125);
  EXPECT_EQ(probabilityOf(" 0.5"), 0.5);  // sscanf skips leading blanks
  EXPECT_EQ(probabilityOf("+0.5"), 0.5);
  EXPECT_EQ(probabilityOf(".5"), 0.5);
  EXPECT_EQ(probabilityOf("1e-400"), 0);  // underflow is 0, not an error
  // Percentages.
  EXPECT_EQ(probabilityOf("0%"), 0);
  EXPECT_EQ(probabilityOf("10%"), 0.1);
  EXPECT_EQ(probabilityOf("50%"), 0.5);
  EXPECT_EQ(probabilityOf("100%"), 1);
  EXPECT_EQ(probabilityOf("200%"), 2);
  EXPECT_DOUBLE_EQ(probabilityOf("1e308%"), 1e306);  // large, but finite
  EXPECT_EQ(probabilityOf("90.25%"), 0.9025);
  // N in M.
  EXPECT_EQ(probabilityOf("1:10"), 0.1);
  EXPECT_EQ(probabilityOf("1/10"), 0.1);
  EXPECT_EQ(probabilityOf("1:1000"), 0.001);
  EXPECT_EQ(probabilityOf("2/99"), 2.0 / 99);
  EXPECT_EQ(probabilityOf("0:1000000"), 0);
  EXPECT_EQ(probabilityOf("0/0"), 0);
  EXPECT_EQ(probabilityOf("1: 2"), 0.5);  // blanks before the divisor, as sscanf takes them
}

TEST(ParseProbability, RefusesWithNbdkitsMessage) {
  EXPECT_EQ(errorOf("-1"), "p: could not parse '-1' as a probability");
  // Empty and junk.
  EXPECT_EQ(errorOf(""), "p: could not parse '' as a probability");
  EXPECT_EQ(errorOf("garbage"), "p: could not parse 'garbage' as a probability");
  EXPECT_EQ(errorOf("0garbage"), "p: could not parse '0garbage' as a probability");
  EXPECT_EQ(errorOf("1X"), "p: could not parse '1X' as a probability");
  EXPECT_EQ(errorOf("1%%"), "p: could not parse '1%%' as a probability");
  EXPECT_EQ(errorOf("0.5 "), "p: could not parse '0.5 ' as a probability");
  EXPECT_EQ(errorOf("1 :2"), "p: could not parse '1 :2' as a probability");
  EXPECT_EQ(errorOf("1:"), "p: could not parse '1:' as a probability");
  EXPECT_EQ(errorOf("1/"), "p: could not parse '1/' as a probability");
  EXPECT_EQ(errorOf("1:1:1"), "p: could not parse '1:1:1' as a probability");
  EXPECT_EQ(errorOf("1/2/3"), "p: could not parse '1/2/3' as a probability");
  EXPECT_EQ(errorOf("1:0"), "p: could not parse '1:0' as a probability");
  // NaN, infinity, overflow.
  EXPECT_EQ(errorOf("nan"), "p: could not parse 'nan' as a probability");
  EXPECT_EQ(errorOf("nan(123)"), "p: could not parse 'nan(123)' as a probability");
  EXPECT_EQ(errorOf("inf"), "p: could not parse 'inf' as a probability");
  EXPECT_EQ(errorOf("Infinity"), "p: could not parse 'Infinity' as a probability");
  EXPECT_EQ(errorOf("nan/nan"), "p: could not parse 'nan/nan' as a probability");
  EXPECT_EQ(errorOf("inf/inf"), "p: could not parse 'inf/inf' as a probability");
  EXPECT_EQ(errorOf("1e200/1e-200"), "p: could not parse '1e200/1e-200' as a probability");
  EXPECT_EQ(errorOf("1e309"), "p: could not parse '1e309' as a probability");
  // Negative, -0 included.
  EXPECT_EQ(errorOf("-0"), "p: could not parse '-0' as a probability");
  EXPECT_EQ(errorOf("-0.0%"), "p: could not parse '-0.0%' as a probability");
  EXPECT_EQ(errorOf("-1/1"), "p: could not parse '-1/1' as a probability");
  EXPECT_EQ(errorOf("0/-1"), "p: could not parse '0/-1' as a probability");
}

TEST(ParseProbability, OneSeparatorOnly) {
  // nbdkit scans "%[:/]" into one char: "1::2" overflows its stack buffer and comes out as 0.5.
  // A deliberate difference: refused here.
  EXPECT_EQ(errorOf("1::2"), "p: could not parse '1::2' as a probability");
  EXPECT_EQ(errorOf("1:/2"), "p: could not parse '1:/2' as a probability");
}

TEST(ParseProbability, MessageNamesWhat) {
  auto result = parseProbability("error-rate", "x");
  ASSERT_TRUE(std::holds_alternative<ParseProbabilityError>(result));
  EXPECT_EQ(std::get<ParseProbabilityError>(result).message,
            "error-rate: could not parse 'x' as a probability");
}

}  // namespace
}  // namespace pyworker
