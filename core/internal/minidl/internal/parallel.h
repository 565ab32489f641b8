// parallel_for: OpenMP over a range, only when the range is large enough to repay starting the team.
#pragma once

#include <omp.h>

#include <cstdint>

namespace minidl::internal {

/// Below this much work (elements × cost per element, cost 1 being a simple elementwise operation) a kernel stays on
/// the calling thread. Measured with relu on this project's 2-core machine (-O3, AVX-512): two threads break even at
/// ~16,000 elements (2 us) and run 1.4x faster at 32,768, 1.8x at 131,072 (a parallel region costs ~1 us).
inline constexpr int64_t kParallelElements = int64_t{1} << 15;

/// Calls f(begin, end) on disjoint parts of [0, n) covering it: one part on this thread when n·cost < the
/// threshold, else one part per OpenMP thread. Only for work whose every result is computed by one call in a
/// fixed order (elementwise, or a reduction kept inside one part), so results never depend on thread count.
template <class F>
void parallel_for(int64_t n, int64_t cost_per_item, F&& f) {
  if (n * cost_per_item < kParallelElements || omp_get_max_threads() == 1 || omp_in_parallel()) {
    f(int64_t{0}, n);
    return;
  }
#pragma omp parallel
  {
    const int64_t threads = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t begin = n * t / threads, end = n * (t + 1) / threads;
    if (begin < end) f(begin, end);
  }
}

}  // namespace minidl::internal
