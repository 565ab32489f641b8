// libFuzzer target: the IDX reader (read_idx), on each input as it is and gzip-compressed, as labels (rank 1)
// and as images (rank 3). Anything but minidl::Error, or memory beyond -rss_limit_mb, is a finding.
#include <zlib.h>

#include <vector>

#include "fuzz_input.h"
#include "minidl/data.h"

namespace {
void read_both_ranks(const std::string& path) {
  for (int rank : {1, 3}) {
    try {
      const minidl::IdxArray a = minidl::read_idx(path, rank);
      // What the reader returns must be what it claims: as many values as its dimensions multiply to.
      size_t n = 1;
      for (uint32_t d : a.dims) n *= d;
      if (a.dims.size() != static_cast<size_t>(rank) || a.values.size() != n) __builtin_trap();
    } catch (const minidl::Error&) {
    }
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string raw = minidl::fuzz::scratch_path(".idx");
  minidl::fuzz::write_input(raw, data, size);
  read_both_ranks(raw);
  // The same bytes gzip-compressed: the reader's streamed path, which stops at the size the header claims.
  // Small window and memory settings keep zlib's buffers small; deflateBound gives the output size they can
  // need (compressBound assumes the defaults, and incompressible input overran it).
  z_stream z{};
  if (deflateInit2(&z, 1, Z_DEFLATED, 9 + 16, 1, Z_DEFAULT_STRATEGY) != Z_OK) __builtin_trap();
  std::vector<uint8_t> packed(deflateBound(&z, static_cast<uLong>(size)));
  z.next_in = const_cast<Bytef*>(data);
  z.avail_in = static_cast<uInt>(size);
  z.next_out = packed.data();
  z.avail_out = static_cast<uInt>(packed.size());
  if (deflate(&z, Z_FINISH) != Z_STREAM_END) __builtin_trap();
  const size_t packed_size = z.total_out;
  deflateEnd(&z);
  const std::string gz = minidl::fuzz::scratch_path(".idx.gz");
  minidl::fuzz::write_input(gz, packed.data(), packed_size);
  read_both_ranks(gz);
  return 0;
}
