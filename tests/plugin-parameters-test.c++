// Parameters: which keys are pyworker's, the order rule, and what is forwarded to the script.

#include <gtest/gtest.h>

#include "parameters.h"

namespace pyworker {
namespace {

TEST(PluginParameters, ScriptFirstThenForwardedInOrder) {
  Parameters p;
  p.accept("script", "/x/ramdisk.py");
  p.accept("size", "64M");
  p.accept("worker", "/opt/w");
  p.accept("size", "1G");
  p.accept("name", "");
  EXPECT_EQ(p.script(), "/x/ramdisk.py");
  ASSERT_TRUE(p.workerPath().has_value());
  EXPECT_EQ(*p.workerPath(), "/opt/w");
  std::vector<std::pair<std::string, std::string>> expected = {
      {"size", "64M"}, {"size", "1G"}, {"name", ""}};
  EXPECT_EQ(p.scriptConfig(), expected);
  EXPECT_NO_THROW(p.checkComplete());
}

TEST(PluginParameters, ScriptKeyMustComeFirst) {
  Parameters p;
  try {
    p.accept("size", "64M");
    FAIL() << "accepted a script parameter before script=";
  } catch (const ParameterError& e) {
    EXPECT_STREQ(e.what(), "the first parameter must be script=/path/to/script.py");
  }
}

TEST(PluginParameters, PyworkerKeysMayComeBeforeScript) {
  Parameters p;
  p.accept("worker", "/opt/w");
  p.accept("script", "/s.py");
  EXPECT_TRUE(p.scriptConfig().empty());
}

TEST(PluginParameters, ScriptTwiceIsAnError) {
  Parameters p;
  p.accept("script", "/a.py");
  EXPECT_THROW(p.accept("script", "/b.py"), ParameterError);
}

TEST(PluginParameters, EmptyValuesForOwnKeysAreErrors) {
  Parameters p;
  EXPECT_THROW(p.accept("script", ""), ParameterError);
  EXPECT_THROW(p.accept("worker", ""), ParameterError);
}

TEST(PluginParameters, NoScriptIsReported) {
  Parameters p;
  try {
    p.checkComplete();
    FAIL() << "no error without a script";
  } catch (const ParameterError& e) {
    EXPECT_NE(std::string(e.what()).find("no script given"), std::string::npos);
  }
}

TEST(PluginParameters, OwnKeys) {
  EXPECT_TRUE(Parameters::isPyworkerKey("script"));
  EXPECT_TRUE(Parameters::isPyworkerKey("worker"));
  EXPECT_FALSE(Parameters::isPyworkerKey("size"));
  EXPECT_FALSE(Parameters::isPyworkerKey("Script"));
}

}  // namespace
}  // namespace pyworker
