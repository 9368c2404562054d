#include "reload-watch.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <string.h>
#include <unistd.h>

#include <kj/debug.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "parameters.h"

namespace pyworker {

namespace {

constexpr int SETTLE_MILLISECONDS = 200;
// An editor's save is several events (write, close, rename, attrib): wait until they stop.

constexpr uint32_t EVENTS = IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_ATTRIB | IN_DELETE;

}  // namespace

bool FileStamp::operator==(const FileStamp& other) const {
  return device == other.device && inode == other.inode && size == other.size &&
         modified.tv_sec == other.modified.tv_sec && modified.tv_nsec == other.modified.tv_nsec;
}

std::optional<FileStamp> stampOf(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) < 0) return std::nullopt;
  return FileStamp{st.st_dev, st.st_ino, st.st_size, st.st_mtim};
}

ReloadWatch::ReloadWatch(std::optional<std::string> script, std::optional<std::string> trigger,
                         std::function<void(const std::string& reason)> reload,
                         std::optional<FileStamp> scriptAsLoaded)
    : reload_(std::move(reload)) {
  int fd;
  KJ_SYSCALL(fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
  inotify_ = kj::AutoCloseFd(fd);
  KJ_SYSCALL(fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  stop_ = kj::AutoCloseFd(fd);
  if (script) add(*script, "the script changed", "reload=on-change");
  if (trigger) add(*trigger, "reload-trigger was touched", "reload-trigger=" + *trigger);
  // Only now that the directory is watched: a change after this stat() is an event.
  std::string changedBeforeWatch;
  if (script && scriptAsLoaded && stampOf(*script) != scriptAsLoaded) {
    changedBeforeWatch = "the script changed";
  }
  thread_ = std::thread([this, changedBeforeWatch] { watch(changedBeforeWatch); });
}

ReloadWatch::~ReloadWatch() noexcept {
  uint64_t one = 1;
  (void)!write(stop_.get(), &one, sizeof(one));
  thread_.join();
}

void ReloadWatch::add(const std::string& path, const char* reason, const std::string& what) {
  std::string directory = directoryOf(path);
  auto slash = path.rfind('/');
  std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  int wd = inotify_add_watch(inotify_.get(), directory.c_str(), EVENTS);
  if (wd < 0) {
    // Checked at configuration time (parameters.h); the directory may have gone since.
    throw ParameterError(what + ": cannot watch the directory " + directory + ": " +
                         strerror(errno));
  }
  watched_.push_back({wd, name, reason});
}

void ReloadWatch::watch(std::string pending) {
  // `pending`: the reason of a change not yet acted on.
  alignas(inotify_event) char buffer[4096];
  for (;;) {
    pollfd fds[] = {{stop_.get(), POLLIN, 0}, {inotify_.get(), POLLIN, 0}};
    int r = poll(fds, 2, pending.empty() ? -1 : SETTLE_MILLISECONDS);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 || (fds[0].revents & POLLIN)) return;
    if (r == 0) {
      // Quiet for a while after a change: act on it.
      reload_(pending);
      pending.clear();
      continue;
    }
    ssize_t n;
    while ((n = read(inotify_.get(), buffer, sizeof(buffer))) > 0) {
      for (char* p = buffer; p < buffer + n;) {
        auto* event = reinterpret_cast<inotify_event*>(p);
        for (auto& w : watched_) {
          if (event->wd == w.descriptor && event->len > 0 && w.name == event->name) {
            pending = w.reason;
          }
        }
        p += sizeof(inotify_event) + event->len;
      }
    }
  }
}

}  // namespace pyworker
