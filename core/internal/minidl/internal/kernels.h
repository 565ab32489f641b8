// Shared numeric kernels used by ops and layers: the matrix product and the bias gradient.
#pragma once

#include <cstdint>
#include <string>

namespace minidl::internal {

/// A row-major matrix operand, optionally read transposed.
struct MatrixArg {
  const float* data;
  int64_t rows, cols;  // as stored
  bool transposed;
  int64_t out_rows() const { return transposed ? cols : rows; }
  int64_t out_cols() const { return transposed ? rows : cols; }
  /// The same storage read the other way: op(flipped()) = op(this)ᵀ.
  MatrixArg flipped() const { return {data, rows, cols, !transposed}; }
};

/// out [M,N] = op(a)·op(b), or out += op(a)·op(b) with accumulate (core/src/gemm.cpp). Every output element is
/// summed over k in the same order whatever the thread count; products of 8 MFLOP and more use the OpenMP team.
void gemm(const MatrixArg& a, const MatrixArg& b, float* out, bool accumulate);
/// How many products have run on several threads since the program started, from any caller. A pass after the
/// products (Adam) compares it from one step to the next: if it moved, that step's gradients were written by
/// several cores.
uint64_t threaded_product_count();
/// The micro-kernel gemm uses on this CPU: "avx512 12x32", "avx2 6x16" or "portable 4x8".
const char* gemm_kernel_name();
/// For tests: use the kernel named "avx512", "avx2" or "portable" from now on; false (nothing changed) when this
/// CPU lacks it.
bool use_gemm_kernel(const std::string& name);

/// db [units] = (fresh ? 0 : db) + the column sums of g [rows, units], summed in double in row order with the
/// columns split between threads (so never dependent on the thread count).
void bias_gradient(const float* g, int64_t rows, int64_t units, float* db, bool fresh);

}  // namespace minidl::internal
