// set_flush_denormal: the MXCSR FTZ and DAZ bits, on this thread and on each OpenMP thread.
#include "minidl/denormal.h"

#include <omp.h>

#if defined(__SSE2__)
#include <xmmintrin.h>
#endif

namespace minidl {
namespace {
#if defined(__SSE2__)
constexpr unsigned kFlushBits = 0x8040;  // FTZ (bit 15) and DAZ (bit 6)
bool set_on_this_thread(bool on) {
  const unsigned csr = _mm_getcsr();
  _mm_setcsr(on ? csr | kFlushBits : csr & ~kFlushBits);
  return (csr & kFlushBits) == kFlushBits;
}
#else
bool set_on_this_thread(bool) { return false; }
#endif
}  // namespace

bool set_flush_denormal(bool on) {
  const bool previous = set_on_this_thread(on);
  // OpenMP's threads keep their own control register: set it in each (the team persists between regions).
  if (!omp_in_parallel()) {
#pragma omp parallel
    set_on_this_thread(on);
  }
  return previous;
}

}  // namespace minidl
