// Per-column sums of row-major [rows, cols] data, in double, streaming whole rows (the layout's fast way):
// the reductions behind a bias gradient and BatchNormalization's statistics and backward.
#pragma once

#include <cstdint>

namespace minidl::internal {

// Each covers columns [0, len) of a row-major block with row stride `stride` and adds every row, in order, so
// a caller that splits the columns between threads gets sums that never depend on the thread count. The
// __restrict parameters let GCC vectorise the loop over columns (without them it stores acc every element).

/// acc[k] += Σ_r x[r, k]
inline void add_column_sums(const float* __restrict x, int64_t rows, int64_t stride, int64_t len,
                            double* __restrict acc) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t k = 0; k < len; ++k) acc[k] += static_cast<double>(x[r * stride + k]);
}

/// acc[k] += Σ_r (x[r, k] − center[k])²
inline void add_column_squared_deviations(const float* __restrict x, const float* __restrict center, int64_t rows,
                                          int64_t stride, int64_t len, double* __restrict acc) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t k = 0; k < len; ++k) {
      const double d = static_cast<double>(x[r * stride + k]) - static_cast<double>(center[k]);
      acc[k] += d * d;
    }
}

/// a[k] += Σ_r u[r, k] and b[k] += Σ_r u[r, k]·v[r, k], in one pass.
inline void add_column_sums_and_dots(const float* __restrict u, const float* __restrict v, int64_t rows,
                                     int64_t stride, int64_t len, double* __restrict a, double* __restrict b) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t k = 0; k < len; ++k) {
      const double ui = static_cast<double>(u[r * stride + k]);
      a[k] += ui;
      b[k] += ui * static_cast<double>(v[r * stride + k]);
    }
}

}  // namespace minidl::internal
