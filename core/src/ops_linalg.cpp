// Linear algebra: the 2-D matrix product with optional transposed operands and the fused linear layer, each
// with its backward (the product itself is core/src/gemm.cpp), and the bias gradient.
#include <algorithm>
#include <vector>

#include "minidl/autograd.h"
#include "minidl/internal/column_sums.h"
#include "minidl/internal/kernels.h"
#include "minidl/internal/parallel.h"
#include "minidl/ops.h"

namespace minidl {
namespace internal {

void bias_gradient(const float* g, int64_t rows, int64_t units, float* db, bool fresh) {
  thread_local std::vector<double> t_sums;  // reused across steps
  t_sums.assign(static_cast<size_t>(units), 0.0);
  double* sums = t_sums.data();
  parallel_for(units, rows, [&](int64_t k0, int64_t k1) { add_column_sums(g + k0, rows, units, k1 - k0, sums + k0); });
  for (int64_t k = 0; k < units; ++k) db[k] = fresh ? static_cast<float>(sums[k]) : db[k] + static_cast<float>(sums[k]);
}

}  // namespace internal

Tensor matmul(const Tensor& a, const Tensor& b, bool transpose_a, bool transpose_b) {
  if (a.dim() != 2 || b.dim() != 2)
    fail("matmul: expects 2-D operands, got ", a.shape().str(), " x ", b.shape().str());
  const internal::MatrixArg ma{a.data(), a.size(0), a.size(1), transpose_a};
  const internal::MatrixArg mb{b.data(), b.size(0), b.size(1), transpose_b};
  if (ma.out_cols() != mb.out_rows())
    fail("matmul: inner dimensions differ: ", a.shape().str(), transpose_a ? "^T" : "", " x ", b.shape().str(),
         transpose_b ? "^T" : "");
  Tensor out = Tensor::empty({ma.out_rows(), mb.out_cols()});
  internal::gemm(ma, mb, out.data(), false);

  return record(out, "matmul", {a, b}, [transpose_a, transpose_b](BackwardContext& c) {
    // C = A'B' with A' = op(A), B' = op(B) and upstream G = dC:
    //   dA' = G B'ᵀ, dB' = A'ᵀ G; a transposed operand takes the transpose of its primed gradient:
    //   dA = ta ? B' Gᵀ : G B'ᵀ          dB = tb ? Gᵀ A' : A'ᵀ G
    const Tensor a = c.input(0), b = c.input(1), &g = c.grad_output();
    const internal::MatrixArg A{a.data(), a.size(0), a.size(1), transpose_a};
    const internal::MatrixArg B{b.data(), b.size(0), b.size(1), transpose_b};
    const internal::MatrixArg G{g.data(), g.size(0), g.size(1), false};
    bool fresh = false;
    if (c.needs_grad(0)) {
      float* da = c.grad_for_write(0, &fresh);
      if (transpose_a) internal::gemm(B, G.flipped(), da, !fresh);
      else internal::gemm(G, B.flipped(), da, !fresh);
    }
    if (c.needs_grad(1)) {
      float* db = c.grad_for_write(1, &fresh);
      if (transpose_b) internal::gemm(G.flipped(), A, db, !fresh);
      else internal::gemm(A.flipped(), G, db, !fresh);
    }
  });
}

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b) {
  if (x.dim() != 2 || w.dim() != 2) fail("linear: expects 2-D x and w, got ", x.shape().str(), " x ", w.shape().str());
  if (x.size(1) != w.size(0)) fail("linear: inner dimensions differ: ", x.shape().str(), " x ", w.shape().str());
  const int64_t rows = x.size(0), units = w.size(1);
  if (b.defined() && !(b.shape() == Shape{units}))
    fail("linear: bias ", b.shape().str(), " does not match ", units, " output units");
  Tensor out = Tensor::empty({rows, units});
  // Start from the bias in every row, then accumulate the product into it.
  float* y = out.data();
  internal::parallel_for(rows, units, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r)
      if (b.defined()) std::copy_n(b.data(), units, y + r * units);
      else std::fill_n(y + r * units, units, 0.0f);
  });
  internal::gemm({x.data(), rows, x.size(1), false}, {w.data(), w.size(0), units, false}, out.data(), true);

  const auto backward = [](BackwardContext& c) {
    // y = xW + b:  dx = G Wᵀ,  dW = xᵀ G,  db = column sums of G.
    const Tensor x = c.input(0), w = c.input(1), &g = c.grad_output();
    const internal::MatrixArg G{g.data(), g.size(0), g.size(1), false};
    bool fresh = false;
    if (c.needs_grad(0)) {
      float* dx = c.grad_for_write(0, &fresh);
      internal::gemm(G, {w.data(), w.size(0), w.size(1), true}, dx, !fresh);
    }
    if (c.needs_grad(1)) {
      float* dw = c.grad_for_write(1, &fresh);
      internal::gemm({x.data(), x.size(0), x.size(1), true}, G, dw, !fresh);
    }
    if (c.num_inputs() == 3 && c.needs_grad(2)) {
      float* db = c.grad_for_write(2, &fresh);
      internal::bias_gradient(g.data(), g.size(0), g.size(1), db, fresh);
    }
  };
  return b.defined() ? record(out, "linear", {x, w, b}, backward) : record(out, "linear", {x, w}, backward);
}

}  // namespace minidl
