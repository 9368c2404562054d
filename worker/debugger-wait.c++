#include "debugger-wait.h"

#include <chrono>
#include <fstream>
#include <string>
#include <thread>

namespace pyworker {

namespace {

bool isTraced() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("TracerPid:", 0) == 0) {
      return std::stol(line.substr(10)) != 0;
    }
  }
  return false;
}

}  // namespace

void waitForDebugger() {
  while (!isTraced()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

}  // namespace pyworker
