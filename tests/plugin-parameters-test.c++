// Parameters: which keys are pyworker's, the order rule, and what is forwarded to the script.

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <string>

#include "parameters.h"
#include "sandbox-plan.h"

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
  // pyworker's keys are consumed; anything else, whatever its case, goes to the script.
  Parameters p;
  p.accept("script", "/s.py");
  p.accept("worker", "/w");
  p.accept("size", "1");
  p.accept("Script", "2");
  std::vector<std::pair<std::string, std::string>> expected = {{"size", "1"}, {"Script", "2"}};
  EXPECT_EQ(p.scriptConfig(), expected);
}

}  // namespace
}  // namespace pyworker

namespace pyworker {
namespace {

std::optional<uint64_t> fakeParseSize(const std::string& s) {
  // Enough of nbdkit_parse_size for these tests: a number with an optional M or G.
  char* end = nullptr;
  uint64_t n = strtoull(s.c_str(), &end, 10);
  if (end == s.c_str()) return std::nullopt;
  if (*end == 'M' && end[1] == '\0') return n << 20;
  if (*end == 'G' && end[1] == '\0') return n << 30;
  if (*end == '\0') return n;
  return std::nullopt;
}

TEST(PluginParameters, SupervisionDefaults) {
  Parameters p(fakeParseSize);
  EXPECT_FALSE(p.timeout().has_value());
  EXPECT_FALSE(p.memoryLimit().has_value());
  EXPECT_FALSE(p.threadStack().has_value());
  EXPECT_EQ(p.maxRestarts(), 5u);
  EXPECT_EQ(p.restartWindow(), std::chrono::seconds(60));
}

TEST(PluginParameters, SupervisionValues) {
  Parameters p(fakeParseSize);
  p.accept("timeout", "2.5");
  p.accept("memory", "512M");
  p.accept("thread-stack", "8M");
  p.accept("max-restarts", "0");
  p.accept("restart-window", "10");
  EXPECT_EQ(*p.timeout(), std::chrono::milliseconds(2500));
  EXPECT_EQ(*p.memoryLimit(), 512u << 20);
  EXPECT_EQ(*p.threadStack(), 8u << 20);
  EXPECT_EQ(p.maxRestarts(), 0u);
  EXPECT_EQ(p.restartWindow(), std::chrono::seconds(10));
  EXPECT_TRUE(p.scriptConfig().empty()) << "pyworker's keys must not reach the script";
}

TEST(PluginParameters, BadSupervisionValuesNameTheProblem) {
  Parameters p(fakeParseSize);
  auto message = [&](const char* key, const char* value) -> std::string {
    try {
      p.accept(key, value);
    } catch (const ParameterError& e) {
      return e.what();
    }
    return "accepted";
  };
  EXPECT_EQ(message("timeout", "soon"), "timeout=soon: expected a number of seconds, at least 0.001");
  EXPECT_EQ(message("timeout", "-1"), "timeout=-1: expected a number of seconds, at least 0.001");
  EXPECT_EQ(message("timeout", "0"), "timeout=0: expected a number of seconds, at least 0.001");
  EXPECT_EQ(message("timeout", "nan"), "timeout=nan: expected a number of seconds, at least 0.001");
  EXPECT_EQ(message("memory", "lots"), "memory=lots: expected a size such as 512M or 2G");
  EXPECT_EQ(message("memory", "255M"),
            "memory=255M: too small for a Python worker (at least 256M)");
  EXPECT_EQ(message("memory", "1M"), "memory=1M: too small for a Python worker (at least 256M)");
  EXPECT_EQ(message("thread-stack", "big"), "thread-stack=big: expected a size such as 1M or 8M");
  EXPECT_EQ(message("thread-stack", "65536"), "thread-stack=65536: expected 128K to 1G");
  EXPECT_EQ(message("thread-stack", "2G"), "thread-stack=2G: expected 128K to 1G");
  EXPECT_EQ(message("thread-stack", "131072"), "accepted");
  EXPECT_EQ(message("max-restarts", "-3"), "max-restarts=-3: expected a whole number");
  EXPECT_EQ(message("max-restarts", "3x"), "max-restarts=3x: expected a whole number");
  EXPECT_EQ(message("restart-window", "0.5"),
            "restart-window=0.5: expected a number of seconds, at least 1");
}

}  // namespace
}  // namespace pyworker

namespace pyworker {
namespace {

TEST(PluginParameters, DebugWaitTakesNbdkitBooleans) {
  for (auto yes : {"1", "true", "YES", "on"}) {
    Parameters p;
    p.accept("debug-wait", yes);
    EXPECT_TRUE(p.debugWait()) << yes;
  }
  for (auto no : {"0", "false", "no", "Off"}) {
    Parameters p;
    p.accept("debug-wait", "1");
    p.accept("debug-wait", no);
    EXPECT_FALSE(p.debugWait()) << no;
  }
  Parameters p;
  try {
    p.accept("debug-wait", "maybe");
    FAIL();
  } catch (const ParameterError& e) {
    EXPECT_STREQ(e.what(),
                 "debug-wait=maybe: expected a boolean (1/0, true/false, yes/no, on/off)");
  }
}

TEST(PluginParameters, PdbIsABooleanOffByDefault) {
  EXPECT_FALSE(Parameters().pdb());
  for (auto yes : {"1", "true", "YES", "on"}) {
    Parameters p;
    p.accept("pdb", yes);
    EXPECT_TRUE(p.pdb()) << yes;
    EXPECT_TRUE(p.scriptConfig().empty()) << "pdb= reached the script";
  }
  Parameters p;
  p.accept("pdb", "on");
  p.accept("pdb", "off");
  EXPECT_FALSE(p.pdb());
  try {
    p.accept("pdb", "maybe");
    FAIL();
  } catch (const ParameterError& e) {
    EXPECT_STREQ(e.what(), "pdb=maybe: expected a boolean (1/0, true/false, yes/no, on/off)");
  }
}

}  // namespace
}  // namespace pyworker

namespace pyworker {
namespace {

TEST(PluginParameters, ReloadAndWorkers) {
  Parameters p;
  EXPECT_FALSE(p.reloadOnChange());
  EXPECT_FALSE(p.reloadTrigger().has_value());
  EXPECT_EQ(p.workers(), 1u);
  p.accept("reload", "on-change");
  p.accept("reload-trigger", "/run/reload-me");
  p.accept("workers", "4");
  EXPECT_TRUE(p.reloadOnChange());
  EXPECT_EQ(*p.reloadTrigger(), "/run/reload-me");
  EXPECT_EQ(p.workers(), 4u);
  p.accept("reload", "off");
  EXPECT_FALSE(p.reloadOnChange());
  EXPECT_THROW(p.accept("reload", "always"), ParameterError);
  EXPECT_THROW(p.accept("reload-trigger", ""), ParameterError);
  EXPECT_THROW(p.accept("workers", "0"), ParameterError);
  EXPECT_THROW(p.accept("workers", "65"), ParameterError);
  EXPECT_TRUE(p.scriptConfig().empty());
}

TEST(PluginParameters, RecoverIsReopenOrOff) {
  Parameters p;
  EXPECT_FALSE(p.recoverByReopening());
  p.accept("recover", "reopen");
  EXPECT_TRUE(p.recoverByReopening());
  p.accept("recover", "off");
  EXPECT_FALSE(p.recoverByReopening());
  try {
    p.accept("recover", "maybe");
    FAIL() << "recover=maybe accepted";
  } catch (const ParameterError& e) {
    EXPECT_STREQ(e.what(), "recover=maybe: expected reopen or off");
  }
  EXPECT_FALSE(p.recoverByReopening());
}

TEST(PluginParameters, SpreadIsABoolean) {
  Parameters p;
  EXPECT_FALSE(p.spread());
  p.accept("spread", "on");
  EXPECT_TRUE(p.spread());
  p.accept("spread", "off");
  EXPECT_FALSE(p.spread());
  try {
    p.accept("spread", "maybe");
    FAIL() << "spread=maybe accepted";
  } catch (const ParameterError& e) {
    EXPECT_STREQ(e.what(), "spread=maybe: expected a boolean (1/0, true/false, yes/no, on/off)");
  }
  EXPECT_FALSE(p.spread());
  EXPECT_TRUE(p.scriptConfig().empty());
}

std::string errorOf(Parameters& p, const char* key, const char* value) {
  try {
    p.accept(key, value);
  } catch (const ParameterError& e) {
    return e.what();
  }
  return "no error";
}

TEST(PluginParameters, ReloadTriggerDirectoryIsCheckedAtOnce) {
  Parameters p;
  EXPECT_EQ(errorOf(p, "reload-trigger", "/nonexistent-pyworker/dir/trigger"),
            "reload-trigger=/nonexistent-pyworker/dir/trigger: the directory "
            "/nonexistent-pyworker/dir does not exist (No such file or directory)");
  EXPECT_EQ(errorOf(p, "reload-trigger", "/etc/passwd/trigger"),
            "reload-trigger=/etc/passwd/trigger: the directory /etc/passwd is not a directory");
  EXPECT_FALSE(p.reloadTrigger().has_value());
  EXPECT_EQ(errorOf(p, "reload-trigger", "/trigger"), "no error");  // in "/"
  EXPECT_EQ(errorOf(p, "reload-trigger", "trigger"), "no error");   // in "."
  EXPECT_EQ(directoryOf("/trigger"), "/");
  EXPECT_EQ(directoryOf("trigger"), ".");
  EXPECT_EQ(directoryOf("a/b/trigger"), "a/b");
}


// --- sandbox= and worker-user= ---------------------------------------------------------------

std::string errorOf(const std::function<void()>& f) {
  try {
    f();
  } catch (const ParameterError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(PluginParameters, SandboxAllowTakesRoRwOrNothing) {
  EXPECT_EQ(parseSandboxAllow("/tmp"), (SandboxPath{"/tmp", false}));
  EXPECT_EQ(parseSandboxAllow("/tmp:ro"), (SandboxPath{"/tmp", true}));
  EXPECT_EQ(parseSandboxAllow("/tmp:rw"), (SandboxPath{"/tmp", false}));
  EXPECT_EQ(parseSandboxAllow("/tmp/../tmp/"), (SandboxPath{"/tmp", false}));  // resolved
  EXPECT_EQ(parseSandboxAllow("/:ro"), (SandboxPath{"/", true}));
  EXPECT_EQ(errorOf([] { parseSandboxAllow("/"); }),
            "sandbox-allow=/: the whole file system cannot be allowed for writing");
  EXPECT_EQ(errorOf([] { parseSandboxAllow("/no/such:ro"); }),
            "sandbox-allow=/no/such:ro: No such file or directory");
  EXPECT_EQ(errorOf([] { parseSandboxAllow(":ro"); }),
            "sandbox-allow parameter must name a path");
}

TEST(PluginParameters, SandboxKeys) {
  Parameters p;
  p.accept("script", "/s.py");
  EXPECT_EQ(p.sandbox(), SandboxMode::OFF);
  EXPECT_TRUE(p.sandboxNet());
  p.accept("sandbox", "best-effort");
  EXPECT_EQ(p.sandbox(), SandboxMode::BEST_EFFORT);
  p.accept("sandbox", "on");
  p.accept("sandbox-allow", "/tmp");
  p.accept("sandbox-allow", "/usr:ro");
  p.accept("sandbox-net", "off");
  EXPECT_EQ(p.sandbox(), SandboxMode::ON);
  EXPECT_FALSE(p.sandboxNet());
  std::vector<SandboxPath> expected = {{"/tmp", false}, {"/usr", true}};
  EXPECT_EQ(p.sandboxAllow(), expected);
  EXPECT_TRUE(p.scriptConfig().empty());  // none of them reaches the script
  EXPECT_NO_THROW(p.checkComplete());
  EXPECT_EQ(errorOf([&] { p.accept("sandbox", "yes"); }),
            "sandbox=yes: expected on, off or best-effort");
}

TEST(PluginParameters, SandboxDetailsNeedTheSandbox) {
  Parameters p;
  p.accept("script", "/s.py");
  p.accept("sandbox-allow", "/tmp");
  EXPECT_EQ(errorOf([&] { p.checkComplete(); }),
            "sandbox-allow=/tmp: needs sandbox=on (or sandbox=best-effort)");
  Parameters q;
  q.accept("script", "/s.py");
  q.accept("sandbox-net", "off");
  EXPECT_EQ(errorOf([&] { q.checkComplete(); }),
            "sandbox-net=off: needs sandbox=on (or sandbox=best-effort)");
}

TEST(PluginParameters, WorkerUserAndGroup) {
  Parameters p;
  p.accept("script", "/s.py");
  p.accept("worker-user", "nobody");
  ASSERT_TRUE(p.workerIdentity().uid.has_value());
  EXPECT_EQ(*p.workerIdentity().uid, 65534u);
  EXPECT_EQ(*p.workerIdentity().gid, 65534u);  // nobody's primary group
  p.accept("worker-group", "root");
  EXPECT_EQ(*p.workerIdentity().gid, 0u);
  Parameters q;
  q.accept("worker-group", "root");  // either order
  q.accept("worker-user", "nobody");
  EXPECT_EQ(*q.workerIdentity().gid, 0u);
  EXPECT_EQ(errorOf([&] { q.accept("worker-user", "nosuch"); }),
            "worker-user=nosuch: no such user");
  EXPECT_EQ(errorOf([&] { q.accept("worker-group", "nosuch"); }),
            "worker-group=nosuch: no such group");
  // Numbers that set*id() would not take as that user: -1 ("unchanged") and past 32 bits
  // (4294967296 would wrap to root).
  for (const char* id : {"4294967295", "4294967296", "9999999999"}) {
    EXPECT_EQ(errorOf([&] { q.accept("worker-user", id); }),
              std::string("worker-user=") + id + ": no such user");
    EXPECT_EQ(errorOf([&] { q.accept("worker-group", id); }),
              std::string("worker-group=") + id + ": no such group");
  }
  q.accept("worker-user", "4294967294");  // the largest a kernel takes
  EXPECT_EQ(*q.workerIdentity().uid, 4294967294u);
}

SandboxPlan planFor(std::initializer_list<std::pair<const char*, const char*>> keys,
                    KernelSupport kernel) {
  Parameters p;
  p.accept("script", "/srv/scripts/disk.py");
  for (auto& [key, value] : keys) p.accept(key, value);
  return planSandbox(p, kernel);
}

TEST(PluginSandboxPlan, WorkerArguments) {
  KernelSupport full{7, true, ""};
  EXPECT_TRUE(planFor({}, full).workerArguments.empty());
  auto plan = planFor({{"sandbox", "on"}, {"sandbox-allow", "/tmp"},
                       {"sandbox-allow", "/usr:ro"}, {"sandbox-net", "off"},
                       {"worker-user", "nobody"}}, full);
  std::vector<std::string> expected = {"--user=65534", "--group=65534", "--sandbox-seccomp",
                                       "--sandbox-landlock=7", "--sandbox-read=/srv/scripts",
                                       "--sandbox-write=/tmp", "--sandbox-read=/usr",
                                       "--sandbox-no-network"};
  EXPECT_EQ(plan.workerArguments, expected);
  EXPECT_TRUE(plan.leftOut.empty());
  EXPECT_EQ(plan.summary, "no_new_privs, seccomp filter, Landlock ABI 7 (files, TCP, device "
                          "ioctls, signals), no network");
}

TEST(PluginSandboxPlan, AScriptAtTheRootGetsItselfNotTheRoot) {
  Parameters p;
  p.accept("script", "/disk.py");
  p.accept("sandbox", "on");
  auto arguments = planSandbox(p, {7, true, ""}).workerArguments;
  EXPECT_NE(std::find(arguments.begin(), arguments.end(), "--sandbox-read=/disk.py"),
            arguments.end());
  EXPECT_EQ(std::find(arguments.begin(), arguments.end(), "--sandbox-read=/"), arguments.end());
}

TEST(PluginSandboxPlan, OnRefusesWhatIsMissing) {
  EXPECT_EQ(errorOf([] { planFor({{"sandbox", "on"}}, {0, true, "simulated"}); }),
            "sandbox=on: the file-system restriction: this kernel has no Landlock (simulated) "
            "(sandbox=best-effort runs without what is missing)");
  EXPECT_EQ(errorOf([] { planFor({{"sandbox", "on"}}, {2, true, ""}); }),
            "sandbox=on: truncation of files outside the allowed paths: this kernel's Landlock "
            "ABI is 2, ABI 3 (Linux 6.2) restricts it (sandbox=best-effort runs without what is "
            "missing)");
  EXPECT_EQ(errorOf([] { planFor({{"sandbox", "on"}}, {3, false, ""}); }),
            "sandbox=on: the system-call filter: this kernel has no seccomp filters "
            "(CONFIG_SECCOMP_FILTER) (sandbox=best-effort runs without what is missing)");
  EXPECT_NO_THROW(planFor({{"sandbox", "on"}}, {3, true, ""}));
}

TEST(PluginSandboxPlan, BestEffortSaysWhatItLeftOut) {
  auto plan = planFor({{"sandbox", "best-effort"}, {"sandbox-net", "off"}}, {0, false, "why"});
  std::vector<std::string> left = {
      "the system-call filter: this kernel has no seccomp filters (CONFIG_SECCOMP_FILTER)",
      "the file-system restriction: this kernel has no Landlock (why)",
      "sandbox-net=off: it needs the system-call filter"};
  EXPECT_EQ(plan.leftOut, left);
  // no_new_privs still: the worker is told it is sandboxed.
  std::vector<std::string> expected = {"--sandbox-landlock=0", "--sandbox-no-network"};
  EXPECT_EQ(plan.workerArguments, expected);
}

}  // namespace
}  // namespace pyworker
