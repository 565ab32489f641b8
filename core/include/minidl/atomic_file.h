// Writing files atomically: a temporary file beside the target, flushed to disk, renamed over it, the
// directory flushed too; checking, before any work, that a path can be written that way; and refusing special
// files as inputs.
#pragma once

#include <functional>
#include <string>

namespace minidl {

/// Calls write(temporary_path), then fsyncs the temporary file, renames it to `path` and fsyncs the directory.
/// When `path` is a symbolic link, the file it points to is replaced (the link stays); an existing file keeps its
/// permission bits. Refuses (minidl::Error, before calling write) to replace anything that is not a regular file
/// — a device such as /dev/full, a directory, a socket. If write throws or any step fails, the temporary file is
/// removed, the previous `path` is left intact, and the error names the path. The temporary,
/// `NAME.tmp.minidl.<16 hex digits>`, is held under an advisory lock (flock) while it is written; such temporaries
/// that no process holds (left by killed runs) are removed first, and no other file is.
/// Returns only after the rename: a caller may then say "saved".
void write_file_atomically(const std::string& path, const std::function<void(const std::string&)>& write);

/// Replaces `path` with `text`, atomically.
void write_text_atomically(const std::string& path, const std::string& text);

/// Throws unless write_file_atomically(path, ...) can succeed as far as can be known now: the directory exists
/// and accepts a new file (checked by creating and removing one), and `path` is absent or a regular file (after
/// following symbolic links). `what` names the flag or setting in the message ("--save").
void check_writable(const std::string& path, const std::string& what);

/// Throws when `path` names a FIFO, a socket or a device (after following symbolic links): opening one to read
/// would block until another process writes, or read something that is not a file. `what` names the kind of file
/// expected ("a CSV file"). A missing path passes: the reader then says it cannot open it.
void check_input_file(const std::string& path, const std::string& what);

/// Held while this process is the one that writes `path` (a checkpoint a run saves after every epoch): a second
/// process asking for the same file, by any name or link, is refused (minidl::Error naming `what`, the file and
/// the process holding it) instead of both printing "saved" and one losing its work. The lock is an advisory flock
/// on `TARGET.minidl-lock` beside the target; the kernel drops it when the process ends however it ends, and the
/// file is removed on release (one a killed run left is simply taken over).
class WriterLock {
 public:
  WriterLock(const std::string& path, const std::string& what);
  ~WriterLock();
  WriterLock(const WriterLock&) = delete;
  WriterLock& operator=(const WriterLock&) = delete;

 private:
  std::string lock_path_;
  int fd_ = -1;
};

/// The file write_file_atomically would replace for `path`: `path` itself, or the target of the symbolic
/// links it names.
std::string resolve_target(const std::string& path);

}  // namespace minidl
