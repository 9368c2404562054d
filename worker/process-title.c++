#include "process-title.h"

#include <sys/prctl.h>

#include <algorithm>
#include <cstring>
#include <mutex>

namespace pyworker {

namespace {

std::mutex titleMutex;
char* area = nullptr;
size_t areaSize = 0;  // counts the final NUL
std::string scriptName = "?";

}  // namespace

void claimProcessTitle(int argc, char** argv) {
  // What `ps -f`, `ps aux`, `pgrep -f` show (/proc/PID/cmdline) is the memory of the argv
  // strings: the title is written there. Only the strings that lie one after another are used
  // (the kernel lays them out so; anything else is not ours to write).
  if (argc < 1 || argv[0] == nullptr) return;
  char* start = argv[0];
  char* end = start + strlen(start) + 1;
  for (int i = 1; i < argc && argv[i] == end; ++i) end = argv[i] + strlen(argv[i]) + 1;
  std::lock_guard<std::mutex> lock(titleMutex);
  area = start;
  areaSize = static_cast<size_t>(end - start);
}

void setWorkerTitle(const std::string& script, pid_t nbdkit) {
  std::lock_guard<std::mutex> lock(titleMutex);
  if (!script.empty()) scriptName = script;
  std::string title = "nbdkit-pyworker-worker " + scriptName + " (nbdkit " +
                      std::to_string(static_cast<long>(nbdkit)) + ")";
  if (area != nullptr && areaSize > 0) {
    // NUL-filled so that no stale argument shows; cut to fit.
    size_t length = std::min(title.size(), areaSize - 1);
    memcpy(area, title.data(), length);
    memset(area + length, 0, areaSize - length);
  }
  char comm[16] = {};
  strncpy(comm, ("pyw:" + scriptName).c_str(), sizeof(comm) - 1);
  prctl(PR_SET_NAME, comm, 0, 0, 0);
}

}  // namespace pyworker
