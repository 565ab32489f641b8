// Atomic file replacement: temporary file, fsync, rename, directory fsync; the old file survives any failure.
#include "minidl/atomic_file.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <vector>

#include "minidl/error.h"
#include "minidl/internal/text.h"

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

constexpr const char* kTemporaryMarker = ".tmp.minidl.";

// A temporary of this process's own beside `target`: `NAME.tmp.minidl.<random hex>`, created (never reused) and
// held under an exclusive advisory lock (flock) until the caller closes the descriptor. The lock is what marks it live: the
// kernel releases it when the process ends however it ends, in any PID namespace, so a temporary nobody holds is
// provably left by a process that stopped. Returns the open descriptor; `path` receives the name.
int create_temporary(const std::string& target, std::string& path) {
  static std::random_device entropy;
  for (int attempt = 0; attempt < 100; ++attempt) {
    char suffix[17];
    std::snprintf(suffix, sizeof suffix, "%08x%08x", entropy(), entropy());
    path = target + kTemporaryMarker + suffix;
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0666);
    if (fd < 0) {
      if (errno == EEXIST) continue;
      return -1;
    }
    // A cleaner may have taken the file in the moment before the lock: then its name is gone, and we start over.
    struct stat held {}, named {};
    if (::flock(fd, LOCK_EX) == 0 && ::fstat(fd, &held) == 0 && held.st_nlink > 0 &&
        ::lstat(path.c_str(), &named) == 0 && named.st_ino == held.st_ino && named.st_dev == held.st_dev)
      return fd;
    ::close(fd);
  }
  errno = EEXIST;
  return -1;
}

// minidl's temporaries beside the target that no process holds (left by a killed run): removed. Anything else
// — another program's `NAME.tmp.1234`, a live run's temporary in any PID namespace — is left alone.
void remove_stale_temporaries(const std::string& target) {
  const fs::path t(target);
  const std::string prefix = t.filename().string() + kTemporaryMarker;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(directory_of(target), ec)) {
    const std::string name = entry.path().filename().string();
    if (name.size() != prefix.size() + 16 || name.compare(0, prefix.size(), prefix) != 0 ||
        name.find_first_not_of("0123456789abcdef", prefix.size()) != std::string::npos)
      continue;
    const int fd = ::open(entry.path().c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) continue;
    struct stat held {}, named {};
    if (::flock(fd, LOCK_EX | LOCK_NB) == 0 && ::fstat(fd, &held) == 0 && S_ISREG(held.st_mode) &&
        ::lstat(entry.path().c_str(), &named) == 0 && named.st_ino == held.st_ino && named.st_dev == held.st_dev)
      ::unlink(entry.path().c_str());
    ::close(fd);
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
  // The rename would succeed over a read-only file, but its owner made it read-only so it would not change.
  if (!(info.st_mode & S_IWUSR) || ::access(target.c_str(), W_OK) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(info.st_mode & 07777));
    fail(what, "'", target, "' is read-only (mode ", mode, "): minidl does not replace a file made read-only — make it "
         "writable (chmod u+w) or write elsewhere");
  }
  return true;
}

std::string label(const std::string& what) { return what.empty() ? "" : what + " "; }

// The path and each symbolic link it goes through, in order; the last is the file itself.
std::vector<fs::path> link_chain(const std::string& path) {
  std::vector<fs::path> chain{fs::path(path)};
  for (int hops = 0; hops < 40; ++hops) {
    std::error_code ec;
    const fs::path& p = chain.back();
    if (!fs::is_symlink(fs::symlink_status(p, ec))) return chain;
    const fs::path target = fs::read_symlink(p, ec);
    if (ec) return chain;
    chain.push_back(target.is_absolute() ? target : p.parent_path() / target);
  }
  fail("'", path, "': too many levels of symbolic links");
}

// /dev/stdout, /dev/fd/N and /proc/self/fd/N name whatever a stream is connected to: when that is a regular file
// (`>> out.txt`), renaming a new file over it would replace the file the shell appends to. Refused. (Other
// devices are refused as not regular files; /dev/shm is a file system like any other.)
void refuse_stream_path(const std::string& path, const std::string& what) {
  for (const fs::path& hop : link_chain(path)) {
    const std::string spelled = fs::absolute(hop).lexically_normal().string();
    if (spelled.rfind("/proc/", 0) == 0 || spelled.rfind("/dev/fd/", 0) == 0 || spelled == "/dev/stdout" ||
        spelled == "/dev/stderr" || spelled == "/dev/stdin")
      fail(what, "'", path, "' names a stream or device (", spelled, "), not a file: minidl writes by renaming a new "
           "file into place, which would replace whatever it is connected to — give a file path");
  }
}
}  // namespace

std::string resolve_target(const std::string& path) { return link_chain(path).back().string(); }

void check_writable(const std::string& path, const std::string& what) {
  if (path.empty()) fail(label(what), "is empty: give a file path");
  const std::string target = resolve_target(path);
  struct stat info {};
  existing_regular_file(target, label(what), info);
  refuse_stream_path(path, label(what));
  const std::string dir = directory_of(target);
  struct stat dir_info {};
  if (::stat(dir.c_str(), &dir_info) != 0 || !S_ISDIR(dir_info.st_mode))
    fail(label(what), "'", path, "': the directory '", dir, "' does not exist — create it first");
  // The temporary's name is the file's plus 28 bytes, so a name near the file system's limit cannot be written.
  const long name_max = ::pathconf(dir.c_str(), _PC_NAME_MAX);
  const size_t name_bytes = fs::path(target).filename().string().size(), extra = std::strlen(kTemporaryMarker) + 16;
  if (name_max > 0 && name_bytes + extra > static_cast<size_t>(name_max))
    fail(label(what), "'", internal::excerpt(path), "': the file name is ", name_bytes, " bytes long; minidl writes a "
         "temporary beside it whose name is ", extra, " bytes longer, and '", dir, "' takes names of at most ", name_max,
         " bytes — use a name of at most ", static_cast<size_t>(name_max) - extra, " bytes");
  std::string probe;
  const int fd = create_temporary(target, probe);
  if (fd < 0) fail(label(what), "'", path, "': cannot create files in '", dir, "': ", std::strerror(errno));
  ::unlink(probe.c_str());
  ::close(fd);
}

void write_file_atomically(const std::string& path, const std::function<void(const std::string&)>& write) {
  const std::string target = resolve_target(path);
  struct stat info {};
  const bool exists = existing_regular_file(target, "", info);
  refuse_stream_path(path, "");
  remove_stale_temporaries(target);
  std::string tmp;
  const int fd = create_temporary(target, tmp);
  if (fd < 0) fail("cannot create a temporary file beside '", target, "': ", std::strerror(errno));
  try {
    if (exists) {  // the replacement keeps the permission bits (and, when we may, the owner) of what it replaces
      (void)::fchmod(fd, info.st_mode & 07777);
      if (::geteuid() == 0) (void)::fchown(fd, info.st_uid, info.st_gid);
    }
    write(tmp);
    if (::fsync(fd) != 0) fail("cannot flush '", tmp, "' to disk: ", std::strerror(errno));
    if (std::rename(tmp.c_str(), target.c_str()) != 0)
      fail("cannot rename '", tmp, "' to '", target, "': ", std::strerror(errno));
  } catch (...) {
    std::remove(tmp.c_str());
    ::close(fd);
    throw;
  }
  ::close(fd);  // after the rename: until then the lock says the temporary is live
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

WriterLock::WriterLock(const std::string& path, const std::string& what) {
  lock_path_ = resolve_target(path) + ".minidl-lock";
  for (int attempt = 0; attempt < 100; ++attempt) {
    fd_ = ::open(lock_path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0666);
    if (fd_ < 0) fail(label(what), "'", path, "': cannot create the lock file '", lock_path_, "': ", std::strerror(errno));
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      char holder[32] = {};
      const ssize_t n = ::pread(fd_, holder, sizeof holder - 1, 0);
      ::close(fd_);
      fd_ = -1;
      fail(label(what), "'", path, "' is being written by another minidl process",
           n > 0 ? " (pid " + std::string(holder, static_cast<size_t>(n)) + ")" : std::string(),
           ": two runs saving one file would each print \"saved\" and keep only the last one's model — give this run "
           "its own file, or wait for the other to end");
    }
    // The file locked must still be the one named: a releasing process removes it, and a lock on a removed file
    // would let a third process take a new one beside it.
    struct stat held {}, named {};
    if (::fstat(fd_, &held) == 0 && ::lstat(lock_path_.c_str(), &named) == 0 && held.st_ino == named.st_ino &&
        held.st_dev == named.st_dev) {
      const std::string pid = std::to_string(::getpid());
      if (::ftruncate(fd_, 0) == 0) (void)!::pwrite(fd_, pid.data(), pid.size(), 0);
      return;
    }
    ::close(fd_);
  }
  fail(label(what), "'", path, "': cannot take the lock file '", lock_path_, "'");
}

WriterLock::~WriterLock() {
  if (fd_ < 0) return;
  ::unlink(lock_path_.c_str());  // while still held, so no other process holds a lock on the removed file
  ::close(fd_);
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
