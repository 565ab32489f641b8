// What the fuzz targets share: minidl's readers take paths, so each input is written to a file first.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>

namespace minidl::fuzz {

/// A file of this process's own, rewritten with every input: under $TMPDIR if set, else in memory (/dev/shm)
/// where there is one — a disk file's truncate and write-back would take most of each execution. Removed when
/// the process exits normally.
inline std::string scratch_path(const std::string& suffix) {
  struct Files {
    std::set<std::string> paths;
    ~Files() {
      for (const std::string& p : paths) std::remove(p.c_str());
    }
  };
  static Files files;
  static const std::string base = [] {
    const char* tmp = std::getenv("TMPDIR");
    const std::string dir = tmp && *tmp ? tmp : ::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    return dir + "/minidl_fuzz_" + std::to_string(::getpid());
  }();
  return *files.paths.insert(base + suffix).first;
}

/// Writes `size` bytes to `path`, replacing what was there; aborts (a harness fault, not a finding) on failure.
inline void write_input(const std::string& path, const uint8_t* data, size_t size) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f || (size > 0 && std::fwrite(data, 1, size, f) != size) || std::fclose(f) != 0) {
    std::perror(path.c_str());
    std::abort();
  }
}

}  // namespace minidl::fuzz
