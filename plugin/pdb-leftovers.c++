#include "pdb-leftovers.h"

#include <dirent.h>
#include <fcntl.h>
#include <glob.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

namespace pyworker {

void removePdbLeftovers(pid_t worker) {
  const char* base = getenv("TMPDIR");
  if (base == nullptr || *base != '/') base = "/tmp";
  std::string pattern = std::string(base) + "/pyworker-pdb-" + std::to_string(worker) + "-*";
  glob_t found;
  if (glob(pattern.c_str(), GLOB_NOSORT, nullptr, &found) != 0) return;
  for (size_t i = 0; i < found.gl_pathc; ++i) {
    const char* path = found.gl_pathv[i];
    // Opened without following a link, and only if it is ours: what it holds is then what our
    // worker put there.
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) continue;
    struct stat st;
    if (fstat(fd, &st) < 0 || st.st_uid != geteuid()) {
      close(fd);
      continue;
    }
    if (DIR* dir = fdopendir(fd)) {
      while (dirent* entry = readdir(dir)) {
        if (strcmp(entry->d_name, ".") != 0 && strcmp(entry->d_name, "..") != 0) {
          unlinkat(dirfd(dir), entry->d_name, 0);
        }
      }
      closedir(dir);
    } else {
      close(fd);
    }
    rmdir(path);
  }
  globfree(&found);
}

}  // namespace pyworker
