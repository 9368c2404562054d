#pragma once
// sandbox= and worker-user= turned into the worker's command-line options, once, at
// configuration: what the kernel offers is checked here, so that sandbox=on refuses to start
// (before anything serves) when a layer is missing, and sandbox=best-effort says what it left
// out. The worker applies exactly what it is given (worker/sandbox.h).

#include <string>
#include <vector>

#include "parameters.h"

namespace pyworker {

struct KernelSupport {
  int landlockAbi = 0;   // 0: no Landlock
  bool seccomp = false;  // seccomp filters (CONFIG_SECCOMP_FILTER)
  std::string landlockWhyNot;  // when 0: errno's text
};

KernelSupport probeKernel();
// This kernel's. PYWORKER_TEST_LANDLOCK_ABI=N (tests only) pretends the Landlock ABI is at most
// N (0: none), PYWORKER_TEST_NO_SECCOMP=1 that seccomp is missing.

constexpr int LANDLOCK_ABI_REQUIRED = 3;
// sandbox=on's minimum: ABI 3 (Linux 6.2) restricts truncate() too; with ABI 1-2 a script could
// still truncate files it may not write.

struct SandboxPlan {
  std::vector<std::string> workerArguments;
  std::vector<std::string> leftOut;  // sandbox=best-effort: each layer the kernel lacks
  std::string summary;               // for nbdkit -v: the layers in use
};

SandboxPlan planSandbox(const Parameters& parameters, const KernelSupport& kernel);
// Throws ParameterError ("sandbox=on: ...") naming the missing piece.

}  // namespace pyworker
