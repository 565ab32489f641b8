// Atomic file replacement: temporary file, fsync, rename; the old file survives any failure.
#include "minidl/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "minidl/error.h"

namespace minidl {

void write_file_atomically(const std::string& path, const std::function<void(const std::string&)>& write) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  try {
    write(tmp);
    const int fd = ::open(tmp.c_str(), O_RDONLY);
    if (fd < 0 || ::fsync(fd) != 0) {
      const int err = errno;
      if (fd >= 0) ::close(fd);
      fail("cannot flush '", tmp, "' to disk: ", std::strerror(err));
    }
    ::close(fd);
    if (std::rename(tmp.c_str(), path.c_str()) != 0)
      fail("cannot rename '", tmp, "' to '", path, "': ", std::strerror(errno));
  } catch (...) {
    std::remove(tmp.c_str());
    throw;
  }
}

void write_text_atomically(const std::string& path, const std::string& text) {
  write_file_atomically(path, [&](const std::string& tmp) {
    std::FILE* out = std::fopen(tmp.c_str(), "w");
    if (!out) fail("cannot create '", tmp, "': ", std::strerror(errno));
    const bool written = std::fwrite(text.data(), 1, text.size(), out) == text.size();
    if (std::fclose(out) != 0 || !written) fail("cannot write '", tmp, "' (disk full?)");
  });
}

}  // namespace minidl
