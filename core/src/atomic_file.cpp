// Atomic file replacement: temporary file, fsync, rename, directory fsync; the old file survives any failure.
#include "minidl/atomic_file.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "minidl/error.h"

namespace minidl {
namespace {
namespace fs = std::filesystem;

std::string kind_of(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISFIFO(mode)) return "a named pipe";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

std::string directory_of(const std::string& target) {
  const fs::path parent = fs::path(target).parent_path();
  return parent.empty() ? "." : parent.string();
}

std::string temporary_for(const std::string& target) { return target + ".tmp." + std::to_string(::getpid()); }

// `NAME.tmp.PID` beside the target, left by a process that no longer runs (killed while saving): removed.
// A PID that runs now (this process, or a later one that reused the number) keeps its file.
void remove_stale_temporaries(const std::string& target) {
  const fs::path t(target);
  const std::string prefix = t.filename().string() + ".tmp.";
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(directory_of(target), ec)) {
    const std::string name = entry.path().filename().string();
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string digits = name.substr(prefix.size());
    if (digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos) continue;
    const pid_t pid = static_cast<pid_t>(std::stol(digits));
    if (pid <= 0 || pid == ::getpid()) continue;
    if (::kill(pid, 0) == 0 || errno != ESRCH) continue;
    struct stat info {};
    if (::lstat(entry.path().c_str(), &info) == 0 && S_ISREG(info.st_mode)) ::unlink(entry.path().c_str());
  }
}

// Whether the target exists (its status in `info`); refuses what must not be replaced.
bool existing_regular_file(const std::string& target, const std::string& what, struct stat& info) {
  if (::stat(target.c_str(), &info) != 0) {
    if (errno == ENOENT) return false;
    fail(what, "'", target, "': ", std::strerror(errno));
  }
  if (!S_ISREG(info.st_mode))
    fail(what, "'", target, "' is ", kind_of(info.st_mode), ": refusing to replace it, minidl saves only to regular files "
         "— give a file path");
  return true;
}

std::string label(const std::string& what) { return what.empty() ? "" : what + " "; }
}  // namespace

std::string resolve_target(const std::string& path) {
  fs::path p(path);
  for (int hops = 0; hops < 40; ++hops) {
    std::error_code ec;
    if (!fs::is_symlink(fs::symlink_status(p, ec))) return p.string();
    const fs::path target = fs::read_symlink(p, ec);
    if (ec) return p.string();
    p = target.is_absolute() ? target : p.parent_path() / target;
  }
  fail("'", path, "': too many levels of symbolic links");
}

void check_writable(const std::string& path, const std::string& what) {
  if (path.empty()) fail(label(what), "is empty: give a file path");
  const std::string target = resolve_target(path);
  struct stat info {};
  existing_regular_file(target, label(what), info);
  const std::string dir = directory_of(target);
  struct stat dir_info {};
  if (::stat(dir.c_str(), &dir_info) != 0 || !S_ISDIR(dir_info.st_mode))
    fail(label(what), "'", path, "': the directory '", dir, "' does not exist — create it first");
  const std::string probe = temporary_for(target);
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) fail(label(what), "'", path, "': cannot create files in '", dir, "': ", std::strerror(errno));
  ::close(fd);
  ::unlink(probe.c_str());
}

void write_file_atomically(const std::string& path, const std::function<void(const std::string&)>& write) {
  const std::string target = resolve_target(path);
  struct stat info {};
  const bool exists = existing_regular_file(target, "", info);
  remove_stale_temporaries(target);
  const std::string tmp = temporary_for(target);
  try {
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0666);
    if (fd < 0) fail("cannot create '", tmp, "': ", std::strerror(errno));
    if (exists) {  // the replacement keeps the permission bits (and, when we may, the owner) of what it replaces
      (void)::fchmod(fd, info.st_mode & 07777);
      if (::geteuid() == 0) (void)::fchown(fd, info.st_uid, info.st_gid);
    }
    ::close(fd);
    write(tmp);
    const int written = ::open(tmp.c_str(), O_RDONLY | O_CLOEXEC);
    if (written < 0 || ::fsync(written) != 0) {
      const int err = errno;
      if (written >= 0) ::close(written);
      fail("cannot flush '", tmp, "' to disk: ", std::strerror(err));
    }
    ::close(written);
    if (std::rename(tmp.c_str(), target.c_str()) != 0)
      fail("cannot rename '", tmp, "' to '", target, "': ", std::strerror(errno));
  } catch (...) {
    std::remove(tmp.c_str());
    throw;
  }
  // The rename is durable once the directory is on disk too (a file system that cannot flush a directory,
  // EINVAL, has nothing more to do).
  const std::string dir = directory_of(target);
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) fail("saved '", target, "' but cannot open its directory '", dir, "' to flush it: ", std::strerror(errno));
  const bool flushed = ::fsync(dir_fd) == 0 || errno == EINVAL;
  const int err = errno;
  ::close(dir_fd);
  if (!flushed) fail("saved '", target, "' but cannot flush its directory '", dir, "': ", std::strerror(err));
}

void write_text_atomically(const std::string& path, const std::string& text) {
  write_file_atomically(path, [&](const std::string& tmp) {
    std::FILE* out = std::fopen(tmp.c_str(), "w");
    if (!out) fail("cannot create '", tmp, "': ", std::strerror(errno));
    const bool written = std::fwrite(text.data(), 1, text.size(), out) == text.size();
    if (std::fclose(out) != 0 || !written) fail("cannot write '", tmp, "' (disk full?)");
  });
}

void check_input_file(const std::string& path, const std::string& what) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) return;
  const char* kind = S_ISFIFO(info.st_mode)  ? "a FIFO (named pipe)"
                     : S_ISSOCK(info.st_mode) ? "a socket"
                     : S_ISCHR(info.st_mode)  ? "a character device"
                     : S_ISBLK(info.st_mode)  ? "a block device"
                                              : nullptr;
  if (kind)
    fail("'", path, "' is ", kind, ", not ", what, ": minidl reads regular files (reading this would wait for another "
         "process, or never end) — write the data to a file first");
}

}  // namespace minidl
