// Worker-path resolution: override, beside the plugin, the build tree, the installed path.

#include <gtest/gtest.h>

#include <set>

#include "parameters.h"
#include "worker-path.h"

namespace pyworker {
namespace {

auto existing(std::set<std::string> paths) {
  return [paths = std::move(paths)](const std::string& p) { return paths.count(p) > 0; };
}

const std::string INSTALLED = "/usr/libexec/nbdkit-pyworker/nbdkit-pyworker-worker";

TEST(WorkerPath, OverrideWins) {
  EXPECT_EQ(resolveWorkerPath(std::string("/opt/w"), "/b/plugin", INSTALLED,
                              existing({"/opt/w", "/b/plugin/nbdkit-pyworker-worker"})),
            "/opt/w");
}

TEST(WorkerPath, OverrideThatIsNotExecutableIsAnErrorNotAFallback) {
  try {
    resolveWorkerPath(std::string("/nope"), "/b/plugin", INSTALLED,
                      existing({"/b/plugin/nbdkit-pyworker-worker"}));
    FAIL();
  } catch (const ParameterError& e) {
    EXPECT_STREQ(e.what(), "worker=/nope: not an executable file");
  }
}

TEST(WorkerPath, BesideThePluginFirst) {
  EXPECT_EQ(resolveWorkerPath(std::nullopt, "/b/plugin", INSTALLED,
                              existing({"/b/plugin/nbdkit-pyworker-worker",
                                        "/b/plugin/../worker/nbdkit-pyworker-worker", INSTALLED})),
            "/b/plugin/nbdkit-pyworker-worker");
}

TEST(WorkerPath, BuildTreeLayout) {
  EXPECT_EQ(resolveWorkerPath(std::nullopt, "/b/plugin", INSTALLED,
                              existing({"/b/plugin/../worker/nbdkit-pyworker-worker", INSTALLED})),
            "/b/plugin/../worker/nbdkit-pyworker-worker");
}

TEST(WorkerPath, InstalledLast) {
  EXPECT_EQ(resolveWorkerPath(std::nullopt, "/usr/lib/nbdkit/plugins", INSTALLED,
                              existing({INSTALLED})),
            INSTALLED);
}

TEST(WorkerPath, NothingFoundNamesEveryPlace) {
  try {
    resolveWorkerPath(std::nullopt, "/b/plugin", INSTALLED, existing({}));
    FAIL();
  } catch (const ParameterError& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("/b/plugin/nbdkit-pyworker-worker"), std::string::npos) << m;
    EXPECT_NE(m.find(INSTALLED), std::string::npos) << m;
    EXPECT_NE(m.find("worker=PATH"), std::string::npos) << m;
  }
}

TEST(WorkerPath, UnknownPluginDirectoryFallsBackToInstalled) {
  EXPECT_EQ(resolveWorkerPath(std::nullopt, "", INSTALLED, existing({INSTALLED})), INSTALLED);
}

}  // namespace
}  // namespace pyworker
