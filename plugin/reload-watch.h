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

#include <sys/stat.h>
#include <time.h>

namespace pyworker {

struct FileStamp {
  // What tells one version of a file from the next: a save that writes in place changes the
  // modification time (and usually the size), one that renames a new file over it the inode.
  dev_t device = 0;
  ino_t inode = 0;
  off_t size = 0;
  timespec modified = {};
  bool operator==(const FileStamp& other) const;
};

std::optional<FileStamp> stampOf(const std::string& path);
// None if the file cannot be stat()ed (gone, for instance).

class ReloadWatch {
public:
  ReloadWatch(std::optional<std::string> script, std::optional<std::string> trigger,
              std::function<void(const std::string& reason)> reload,
              std::optional<FileStamp> scriptAsLoaded = std::nullopt);
  // Starts the watching thread (so only from after_fork on). `reload` runs on it, one change
  // at a time, after the burst of events a save makes has settled. `scriptAsLoaded`: the
  // script's stamp when the first workers loaded it; if it differs once the watch is in place,
  // that change (made while nbdkit started, before anything watched) is acted on too. Throws
  // if inotify fails (ParameterError naming the parameter when a directory cannot be watched).
  ~ReloadWatch() noexcept;
  // Stops watching and joins (waits for a reload in progress).

private:
  struct Watched {
    int descriptor;
    std::string name;  // the file's name within the watched directory
    std::string reason;
  };

  void watch(std::string pending);
  // `pending`: a change seen before the thread started (the script changed during start-up).
  void add(const std::string& path, const char* reason, const std::string& what);
  // `what` names the parameter in the error if the directory cannot be watched.

  kj::AutoCloseFd inotify_;
  kj::AutoCloseFd stop_;  // eventfd: the destructor's wake-up
  std::vector<Watched> watched_;
  std::function<void(const std::string&)> reload_;
  std::thread thread_;
};

}  // namespace pyworker
