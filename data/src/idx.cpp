// The IDX format (unsigned bytes only), read through zlib's gzread, which accepts gzip and raw files alike.
#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <iomanip>
#include <memory>
#include <sstream>
#include <sys/stat.h>

#include "minidl/atomic_file.h"
#include "minidl/data.h"
#include "minidl/error.h"

namespace minidl {
namespace {
constexpr uint8_t kUnsignedByte = 0x08;
constexpr int64_t kMaxPayload = int64_t{1} << 32;  // 4 GiB: far beyond any MNIST-style file

std::string hex(uint32_t v) {
  std::ostringstream out;
  out << "0x" << std::hex << std::setw(8) << std::setfill('0') << v;
  return out.str();
}

struct GzCloser {
  void operator()(gzFile_s* f) const { gzclose(f); }
};
using GzFile = std::unique_ptr<gzFile_s, GzCloser>;

// Reads exactly n bytes or reports how many there were; a broken gzip stream is an error of its own.
int64_t read_bytes(gzFile f, const std::string& path, void* dst, int64_t n) {
  int64_t done = 0;
  while (done < n) {
    const unsigned chunk = static_cast<unsigned>(std::min<int64_t>(n - done, 1 << 30));
    const int got = gzread(f, static_cast<char*>(dst) + done, chunk);
    if (got < 0) {
      int code = 0;
      const char* message = gzerror(f, &code);
      fail("'", path, "': corrupt or truncated gzip stream (", message, ") after ", done, " payload bytes");
    }
    if (got == 0) break;
    done += got;
  }
  if (done < n) {
    // gzread reports a stream cut short as a plain end of file only after the fact.
    int code = 0;
    const char* message = gzerror(f, &code);
    if (code != Z_OK && code != Z_STREAM_END)
      fail("'", path, "': corrupt or truncated gzip stream (", message, ")");
  }
  return done;
}
}  // namespace

IdxArray read_idx(const std::string& path, int expected_rank) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) fail("cannot open '", path, "': ", std::strerror(errno));
  if (S_ISDIR(info.st_mode)) fail("'", path, "' is a directory, expected an IDX file");
  check_input_file(path, "an IDX file");
  const GzFile file(gzopen(path.c_str(), "rb"));
  if (!file) fail("cannot open '", path, "': ", std::strerror(errno));
  // zlib's buffer: 1 MiB reads Fashion-MNIST 10 % faster than 32 KiB; a small file needs no more than its size.
  gzbuffer(file.get(), static_cast<unsigned>(std::clamp<int64_t>(info.st_size, 8 << 10, 1 << 20)));

  const uint32_t expected_magic = (uint32_t{kUnsignedByte} << 8) | static_cast<uint32_t>(expected_rank);
  uint8_t magic[4];
  if (read_bytes(file.get(), path, magic, 4) != 4)
    fail("'", path, "': too short for an IDX header: expected the magic number ", hex(expected_magic));
  const uint32_t found = (uint32_t{magic[0]} << 24) | (uint32_t{magic[1]} << 16) | (uint32_t{magic[2]} << 8) | magic[3];
  if (found != expected_magic)
    fail("'", path, "': bad magic number: expected ", hex(expected_magic), " (unsigned bytes, ", expected_rank,
         " dimensions), found ", hex(found), found >> 16 ? " — not an IDX file" : "");

  IdxArray array;
  int64_t payload = 1;
  for (int axis = 0; axis < expected_rank; ++axis) {
    uint8_t b[4];
    if (read_bytes(file.get(), path, b, 4) != 4)
      fail("'", path, "': header ends before dimension ", axis, " of ", expected_rank);
    const int64_t d = (int64_t{b[0]} << 24) | (int64_t{b[1]} << 16) | (int64_t{b[2]} << 8) | b[3];
    if (d == 0) fail("'", path, "': dimension ", axis, " is zero");
    array.dims.push_back(d);
    if (__builtin_mul_overflow(payload, d, &payload) || payload > kMaxPayload)
      fail("'", path, "': header claims more than ", kMaxPayload, " bytes of payload — a corrupt header");
  }
  // What the header claims is checked against the file before memory is taken for it: a raw file must hold
  // exactly that many bytes; a gzip stream is read in pieces that double from 64 KiB, so a small file claiming
  // gigabytes fails after reading what it really holds, having taken at most twice that.
  const int64_t header_bytes = 4 + 4 * static_cast<int64_t>(expected_rank);
  const int64_t raw_payload = static_cast<int64_t>(info.st_size) - header_bytes;
  if (gzdirect(file.get()) && raw_payload < payload)
    fail("'", path, "': payload is shorter than the header says: expected ", payload, " bytes, found ", raw_payload);
  if (gzdirect(file.get()) && raw_payload > payload)
    fail("'", path, "': payload is longer than the header says: expected ", payload, " bytes, found more");
  int64_t got = 0;
  for (int64_t piece = int64_t{64} << 10; got < payload; piece *= 2) {
    const int64_t want = std::min(payload - got, piece);
    array.values.resize(static_cast<size_t>(got + want));
    const int64_t n = read_bytes(file.get(), path, array.values.data() + got, want);
    got += n;
    if (n < want) break;
  }
  if (got < payload)
    fail("'", path, "': payload is shorter than the header says: expected ", payload, " bytes, found ", got);
  uint8_t extra;
  if (read_bytes(file.get(), path, &extra, 1) != 0)
    fail("'", path, "': payload is longer than the header says: expected ", payload, " bytes, found more");
  return array;
}

void write_idx(const std::string& path, const IdxArray& array, bool gzip) {
  std::string bytes = {0, 0, static_cast<char>(kUnsignedByte), static_cast<char>(array.dims.size())};
  int64_t payload = 1;
  for (int64_t d : array.dims) {
    for (int shift = 24; shift >= 0; shift -= 8) bytes += static_cast<char>((d >> shift) & 0xff);
    payload *= d;
  }
  if (payload != static_cast<int64_t>(array.values.size()))
    fail("write_idx '", path, "': dimensions hold ", payload, " values, got ", array.values.size());
  bytes.append(reinterpret_cast<const char*>(array.values.data()), array.values.size());
  write_file_atomically(path, [&](const std::string& tmp) {
    gzFile file = gzopen(tmp.c_str(), gzip ? "wb6" : "wbT");  // T: no compression
    if (!file) fail("cannot create '", tmp, "': ", std::strerror(errno));
    const bool written = gzwrite(file, bytes.data(), static_cast<unsigned>(bytes.size())) == static_cast<int>(bytes.size());
    if (gzclose(file) != Z_OK || !written) fail("cannot write '", tmp, "' (disk full?)");
  });
}

}  // namespace minidl
