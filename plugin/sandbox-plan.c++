#include "sandbox-plan.h"

#include <errno.h>
#include <linux/landlock.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace pyworker {

KernelSupport probeKernel() {
  KernelSupport kernel;
  long abi = syscall(SYS_landlock_create_ruleset, nullptr, 0, LANDLOCK_CREATE_RULESET_VERSION);
  if (abi < 0) {
    kernel.landlockWhyNot = errno == EOPNOTSUPP ? "Landlock is built in but not enabled (lsm=)"
                                                 : std::string("landlock_create_ruleset: ") +
                                                       strerror(errno);
    abi = 0;
  }
  kernel.landlockAbi = static_cast<int>(abi);
  if (const char* simulated = getenv("PYWORKER_TEST_LANDLOCK_ABI")) {
    int at_most = std::atoi(simulated);
    if (at_most < kernel.landlockAbi) {
      kernel.landlockAbi = at_most;
      if (at_most == 0) kernel.landlockWhyNot = "simulated by PYWORKER_TEST_LANDLOCK_ABI=0";
    }
  }
  // PR_GET_SECCOMP fails with EINVAL on a kernel built without seccomp; filters came with it
  // in every kernel Landlock runs on.
  kernel.seccomp = prctl(PR_GET_SECCOMP, 0, 0, 0, 0) >= 0;
  if (const char* simulated = getenv("PYWORKER_TEST_NO_SECCOMP"); simulated && *simulated == '1') {
    kernel.seccomp = false;
  }
  return kernel;
}

SandboxPlan planSandbox(const Parameters& parameters, const KernelSupport& kernel) {
  SandboxPlan plan;
  const auto& who = parameters.workerIdentity();
  if (who.uid) plan.workerArguments.push_back("--user=" + std::to_string(*who.uid));
  if (who.gid) plan.workerArguments.push_back("--group=" + std::to_string(*who.gid));
  SandboxMode mode = parameters.sandbox();
  if (mode == SandboxMode::OFF) return plan;
  bool strict = mode == SandboxMode::ON;

  std::vector<std::string> missing;
  if (!kernel.seccomp) {
    missing.push_back("the system-call filter: this kernel has no seccomp filters "
                      "(CONFIG_SECCOMP_FILTER)");
  } else {
    plan.workerArguments.push_back("--sandbox-seccomp");
  }
  plan.workerArguments.push_back("--sandbox-landlock=" + std::to_string(kernel.landlockAbi));
  if (kernel.landlockAbi == 0) {
    missing.push_back("the file-system restriction: this kernel has no Landlock (" +
                      kernel.landlockWhyNot + ")");
  } else {
    if (kernel.landlockAbi < LANDLOCK_ABI_REQUIRED) {
      missing.push_back("truncation of files outside the allowed paths: this kernel's Landlock "
                        "ABI is " + std::to_string(kernel.landlockAbi) + ", ABI " +
                        std::to_string(LANDLOCK_ABI_REQUIRED) + " (Linux 6.2) restricts it");
    }
    // The script's directory (its modules beside it), but never the root of everything: a
    // script in / gets itself alone.
    std::string directory = directoryOf(parameters.script());
    plan.workerArguments.push_back("--sandbox-read=" +
                                   (directory == "/" ? parameters.script() : directory));
    for (const auto& allowed : parameters.sandboxAllow()) {
      plan.workerArguments.push_back((allowed.readOnly ? "--sandbox-read=" : "--sandbox-write=") +
                                     allowed.path);
    }
  }
  if (!parameters.sandboxNet()) {
    // The seccomp filter refuses socket() (and Landlock ABI >= 4 TCP bind/connect): without
    // seccomp, nothing stops a script's sockets.
    if (!kernel.seccomp) missing.push_back("sandbox-net=off: it needs the system-call filter");
    plan.workerArguments.push_back("--sandbox-no-network");
  }
  if (parameters.pdb()) {
    // The breakpoints' directory is made before the sandbox, and may be written in it.
    plan.workerArguments.push_back("--sandbox-pdb");
  }
  if (strict && !missing.empty()) {
    std::string text = "sandbox=on: " + missing.front();
    for (size_t i = 1; i < missing.size(); ++i) text += "; " + missing[i];
    throw ParameterError(text + " (sandbox=best-effort runs without what is missing)");
  }
  plan.leftOut = missing;

  plan.summary = std::string(kernel.seccomp ? "no_new_privs, seccomp filter" : "no_new_privs");
  if (kernel.landlockAbi > 0) {
    plan.summary += ", Landlock ABI " + std::to_string(kernel.landlockAbi) + " (files";
    if (kernel.landlockAbi >= 4 && !parameters.sandboxNet()) plan.summary += ", TCP";
    if (kernel.landlockAbi >= 5) plan.summary += ", device ioctls";
    if (kernel.landlockAbi >= 6) plan.summary += ", signals";
    plan.summary += ")";
  }
  plan.summary += parameters.sandboxNet() ? ", network allowed" : ", no network";
  return plan;
}

}  // namespace pyworker
