#pragma once
// reload=on-change and reload-trigger=PATH: watches the script (through its directory, so that
// editors that write a new file and rename it over the old one are seen) and the trigger file,
// and asks for a reload when either changes. nbdkit keeps SIGHUP for itself (it quits), hence a
// file to touch rather than a signal.

#include <functional>
#include <optional>
#include <string>
#include <thread>

#include <kj/io.h>

namespace pyworker {

class ReloadWatch {
public:
  ReloadWatch(std::optional<std::string> script, std::optional<std::string> trigger,
              std::function<void(const std::string& reason)> reload);
  // Starts the watching thread (so only from after_fork on). `reload` runs on it, one change
  // at a time, after the burst of events a save makes has settled. Throws if inotify fails
  // (ParameterError naming the parameter when a directory cannot be watched).
  ~ReloadWatch() noexcept;
  // Stops watching and joins (waits for a reload in progress).

private:
  struct Watched {
    int descriptor;
    std::string name;  // the file's name within the watched directory
    std::string reason;
  };

  void watch();
  void add(const std::string& path, const char* reason, const std::string& what);
  // `what` names the parameter in the error if the directory cannot be watched.

  kj::AutoCloseFd inotify_;
  kj::AutoCloseFd stop_;  // eventfd: the destructor's wake-up
  std::vector<Watched> watched_;
  std::function<void(const std::string&)> reload_;
  std::thread thread_;
};

}  // namespace pyworker
