// Linear algebra: the 2-D matrix product with optional transposed operands, and its backward.
#include "minidl/autograd.h"
#include "minidl/internal/eigen.h"
#include "minidl/internal/kernels.h"
#include "minidl/ops.h"

namespace minidl {
namespace internal {

void gemm(const MatrixArg& a, const MatrixArg& b, float* out, bool accumulate) {
  const ConstMatrixMap ma(a.data, a.rows, a.cols), mb(b.data, b.rows, b.cols);
  MatrixMap c(out, a.out_rows(), b.out_cols());
  const auto run = [&](const auto& lhs, const auto& rhs) {
    if (accumulate)
      c.noalias() += lhs * rhs;
    else
      c.noalias() = lhs * rhs;
  };
  if (a.transposed) {
    if (b.transposed) run(ma.transpose(), mb.transpose());
    else run(ma.transpose(), mb);
  } else {
    if (b.transposed) run(ma, mb.transpose());
    else run(ma, mb);
  }
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
    const auto flip = [](internal::MatrixArg m) { m.transposed = !m.transposed; return m; };
    if (c.needs_grad(0)) {
      if (transpose_a) internal::gemm(B, flip(G), c.grad(0), true);
      else internal::gemm(G, flip(B), c.grad(0), true);
    }
    if (c.needs_grad(1)) {
      if (transpose_b) internal::gemm(flip(G), A, c.grad(1), true);
      else internal::gemm(flip(A), G, c.grad(1), true);
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
  internal::MatrixMap y(out.data(), rows, units);
  if (b.defined())
    y.rowwise() = internal::ConstMatrixMap(b.data(), 1, units).row(0);
  else
    y.setZero();
  internal::gemm({x.data(), rows, x.size(1), false}, {w.data(), w.size(0), units, false}, out.data(), true);

  const auto backward = [](BackwardContext& c) {
    // y = xW + b:  dx = G Wᵀ,  dW = xᵀ G,  db = column sums of G.
    const Tensor x = c.input(0), w = c.input(1), &g = c.grad_output();
    const internal::MatrixArg G{g.data(), g.size(0), g.size(1), false};
    if (c.needs_grad(0)) internal::gemm(G, {w.data(), w.size(0), w.size(1), true}, c.grad(0), true);
    if (c.needs_grad(1)) internal::gemm({x.data(), x.size(0), x.size(1), true}, G, c.grad(1), true);
    if (c.num_inputs() == 3 && c.needs_grad(2)) {
      internal::MatrixMap db(c.grad(2), 1, g.size(1));
      db.noalias() += internal::ConstMatrixMap(g.data(), g.size(0), g.size(1)).colwise().sum();
    }
  };
  return b.defined() ? record(out, "linear", {x, w, b}, backward) : record(out, "linear", {x, w}, backward);
}

}  // namespace minidl
