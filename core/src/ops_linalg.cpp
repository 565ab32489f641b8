// Linear algebra: the 2-D matrix product with optional transposed operands, and its backward.
#include <algorithm>
#include <vector>

#include <omp.h>

#include "minidl/autograd.h"
#include "minidl/internal/column_sums.h"
#include "minidl/internal/eigen.h"
#include "minidl/internal/kernels.h"
#include "minidl/internal/parallel.h"
#include "minidl/ops.h"

namespace minidl {
namespace internal {

namespace {
// Below this many FLOPs a product runs whole on the calling thread: forking a team costs more than it saves.
constexpr double kParallelFlops = 8e6;
// With fewer rows in the result than this, the packed driver's row chunks are too few to share between
// threads; such products are split by columns instead.
constexpr int64_t kPackedMinRows = 64;

// Calls f(op(a), op(b)) with the operands as Eigen expressions, transposed as asked.
template <class F>
void with_operands(const MatrixArg& a, const MatrixArg& b, F f) {
  const ConstMatrixMap ma(a.data, a.rows, a.cols), mb(b.data, b.rows, b.cols);
  if (a.transposed) {
    if (b.transposed) f(ma.transpose(), mb.transpose());
    else f(ma.transpose(), mb);
  } else {
    if (b.transposed) f(ma, mb.transpose());
    else f(ma, mb);
  }
}

// out[rows r0.., cols c0..] (+)= op(a)[r0.., :] · op(b)[:, c0..], one Eigen product on this thread.
void gemm_block(const MatrixArg& a, const MatrixArg& b, float* out, int64_t ldc, bool accumulate, int64_t r0,
                int64_t rows, int64_t c0, int64_t cols) {
  Eigen::Map<RowMatrix, 0, Eigen::OuterStride<>> c(out + r0 * ldc + c0, rows, cols, Eigen::OuterStride<>(ldc));
  with_operands(a, b, [&](const auto& lhs, const auto& rhs) {
    if (accumulate)
      c.noalias() += lhs.middleRows(r0, rows) * rhs.middleCols(c0, cols);
    else
      c.noalias() = lhs.middleRows(r0, rows) * rhs.middleCols(c0, cols);
  });
}

// The whole product on this thread, through plain maps (blocks of maps take a slower path in Eigen for small
// products: measured 0.20 -> 0.37 s per epoch at batch 32).
void gemm_whole(const MatrixArg& a, const MatrixArg& b, float* out, bool accumulate) {
  MatrixMap c(out, a.out_rows(), b.out_cols());
  with_operands(a, b, [&](const auto& lhs, const auto& rhs) {
    if (accumulate)
      c.noalias() += lhs * rhs;
    else
      c.noalias() = lhs * rhs;
  });
}
}  // namespace

// Eigen's packing routines and GEBP micro-kernel (Goto's algorithm), driven by our own loop so that a
// product's shared operand is packed once for all threads, and every output element is computed by the same
// kernel calls in the same order whatever the thread count. Eigen works in column-major terms: our row-major
// C[m,n] is its column-major Cᵀ[n,m] = op(B)ᵀ · op(A)ᵀ, so "lhs" below is op(B)ᵀ and "rhs" is op(A)ᵀ.
// These are Eigen's internal classes, with the signatures of Eigen 3.4 (CMake asks for 3.4; Debian 12 ships
// 3.4.0); the [linalg] tests check every path against a double-precision reference.
namespace packed {
using Index = Eigen::Index;
using Traits = Eigen::internal::gebp_traits<float, float>;
using ResMapper = Eigen::internal::blas_data_mapper<float, Index, Eigen::ColMajor, Eigen::Unaligned, 1>;
using Buffer = std::vector<float, Eigen::aligned_allocator<float>>;
template <int Order>
using Mapper = Eigen::internal::const_blas_data_mapper<float, Index, Order>;
template <int Order>
using PackLhs = Eigen::internal::gemm_pack_lhs<float, Index, Mapper<Order>, Traits::mr, Traits::LhsProgress,
                                               typename Traits::LhsPacket4Packing, Order>;
template <int Order>
using PackRhs = Eigen::internal::gemm_pack_rhs<float, Index, Mapper<Order>, Traits::nr, Order>;
using Kernel = Eigen::internal::gebp_kernel<float, float, Index, ResMapper, Traits::mr, Traits::nr, false, false>;

// Grow-only scratch: the calling thread's packed lhs, and each thread's packed rhs block. Reused across calls,
// so a training step allocates nothing here after its first.
thread_local Buffer t_packed_lhs, t_packed_rhs;
float* scratch(Buffer& b, Index n) {
  if (static_cast<Index>(b.size()) < n) b.resize(static_cast<size_t>(n));
  return b.data();
}

// Blocking, from the shape and the cache sizes alone (never the thread count): kc splits the depth, and the
// rows of C are taken in chunks of about half Eigen's nc, an even number of them, each a multiple of the
// kernel's nr. Smaller chunks let a thread that a noisy neighbour slows take fewer of them: with chunks of a
// whole nc the faster thread waited 0.3-0.7 ms at the end of each 1024x784x1024 product. Quarters cut that
// wait most but read the shared packed operand more often; halves gave the best 1024x1024 training step
// (medians of 5 bench runs on two threads: 74% of the GEMM peak with whole nc, 77% halves, 76% quarters).
struct Plan {
  Index kc, chunk, chunks;
};
Plan plan(Index m, Index n, Index k) {
  Index kc = k, mc = n, nc = m;
  Eigen::internal::computeProductBlockingSizes<float, float, 1>(kc, mc, nc, Index{1});
  Index chunks = 2 * ((m + nc - 1) / nc);
  chunks = std::max<Index>(2, chunks + chunks % 2);
  const Index nr = Traits::nr;
  const Index chunk = ((m + chunks - 1) / chunks + nr - 1) / nr * nr;
  return {kc, chunk, (m + chunk - 1) / chunk};
}

// C[m,n] (+)= L-side op(B) and R-side op(A) as Eigen mappers, with the storage orders as template arguments.
template <int LhsOrder, int RhsOrder>
void run(Index m, Index n, Index k, const Mapper<LhsOrder>& lhs, const Mapper<RhsOrder>& rhs, float* out,
         bool accumulate) {
  const Plan p = plan(m, n, k);
  const Index k_blocks = (k + p.kc - 1) / p.kc;
  // Packed lhs for every depth block, one after another, each starting on the alignment the kernel's packet
  // loads need (n·kc floats need not be a multiple of it: 97 x 552 is not).
  constexpr Index align = EIGEN_MAX_ALIGN_BYTES / sizeof(float);
  const Index block_stride = (n * p.kc + align - 1) / align * align;
  float* packed_lhs = scratch(t_packed_lhs, block_stride * k_blocks);
  // Rows of op(B)ᵀ are packed in panels of mr rows, so that the pieces join up exactly as one packing of the
  // whole would (the layout Eigen's own parallel product relies on), and split evenly between threads.
  const Index panel = Traits::mr, panels = (n + panel - 1) / panel;
  const bool threaded = omp_get_max_threads() > 1 && !omp_in_parallel();
#pragma omp parallel if (threaded)
  {
#pragma omp for schedule(static) collapse(2)
    for (Index q = 0; q < k_blocks; ++q)
      for (Index i = 0; i < panels; ++i) {
        const Index k0 = q * p.kc, kc = std::min(p.kc, k - k0), r0 = i * panel, rows = std::min(panel, n - r0);
        PackLhs<LhsOrder>()(packed_lhs + q * block_stride + r0 * kc, lhs.getSubMapper(r0, k0), kc, rows);
      }
    // (implicit barrier: every panel is packed before any thread reads it)
    float* packed_rhs = scratch(t_packed_rhs, p.kc * p.chunk);
#pragma omp for schedule(dynamic, 1)
    for (Index c = 0; c < p.chunks; ++c) {
      const Index j0 = c * p.chunk, cols = std::min(p.chunk, m - j0);
      if (!accumulate) std::fill_n(out + j0 * n, cols * n, 0.0f);
      const ResMapper res(out + j0 * n, n);
      for (Index q = 0; q < k_blocks; ++q) {
        const Index k0 = q * p.kc, kc = std::min(p.kc, k - k0);
        PackRhs<RhsOrder>()(packed_rhs, rhs.getSubMapper(k0, j0), kc, cols);
        Kernel()(res, packed_lhs + q * block_stride, packed_rhs, n, kc, cols, 1.0f);
      }
    }
  }
}
}  // namespace packed

void gemm(const MatrixArg& a, const MatrixArg& b, float* out, bool accumulate) {
  const int64_t m = a.out_rows(), n = b.out_cols(), k = a.out_cols();
  if (2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k) < kParallelFlops) {
    gemm_whole(a, b, out, accumulate);
    return;
  }
  if (n < packed::Traits::LhsProgress && a.transposed && m >= packed::Traits::LhsProgress) {
    // A thin result of a transposed operand, like a weight gradient hᵀ·g with 10 classes: the kernel would run
    // on fewer rows than one SIMD panel, over a row-major operand packed four columns at a time. Computing
    // Cᵀ = op(B)ᵀ·op(A)ᵀ instead puts the long side in the kernel's rows (measured 0.40 -> 0.15 ms for
    // 1024x1024ᵀ·1024x10 on two threads), and the transpose back touches only m·n values. (The transposed
    // product has fewer than LhsProgress rows, so it never comes back here.)
    thread_local std::vector<float> t_transposed;
    t_transposed.resize(static_cast<size_t>(m * n));
    float* ct = t_transposed.data();
    gemm(b.flipped(), a.flipped(), ct, false);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) out[i * n + j] = accumulate ? out[i * n + j] + ct[j * m + i] : ct[j * m + i];
    return;
  }
  if (m >= kPackedMinRows) {
    // op(B)ᵀ: B read as stored is column-major n×k (stride b.cols); B read transposed is row-major n×k.
    // op(A)ᵀ: likewise, k×m.
    using packed::Mapper;
    constexpr int Col = Eigen::ColMajor, Row = Eigen::RowMajor;
    if (!b.transposed) {
      const Mapper<Col> lhs(b.data, b.cols);
      if (!a.transposed) packed::run<Col, Col>(m, n, k, lhs, Mapper<Col>(a.data, a.cols), out, accumulate);
      else packed::run<Col, Row>(m, n, k, lhs, Mapper<Row>(a.data, a.cols), out, accumulate);
    } else {
      const Mapper<Row> lhs(b.data, b.cols);
      if (!a.transposed) packed::run<Row, Col>(m, n, k, lhs, Mapper<Col>(a.data, a.cols), out, accumulate);
      else packed::run<Row, Row>(m, n, k, lhs, Mapper<Row>(a.data, a.cols), out, accumulate);
    }
    return;
  }
  // Few rows and many columns: chunks of columns, each one Eigen product on one thread. Their number and
  // bounds depend on the shape alone, and K is never split, so the result never depends on the thread count.
  const int64_t chunks = std::clamp<int64_t>(n / 64, 2, 8) / 2 * 2;
  const int64_t step = (n + chunks - 1) / chunks;
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t i = 0; i < chunks; ++i) {
    const int64_t begin = i * step, size = std::min(step, n - begin);
    if (size > 0) gemm_block(a, b, out, n, accumulate, 0, m, begin, size);
  }
}

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
