// minidl's matrix product: BLIS-style loops around a register-tile micro-kernel (AVX-512, AVX2+FMA, or portable
// C++, chosen at run time), op(B) packed once for all threads, and work split into items fixed by the shape alone,
// so that every output element is computed by the same instructions in the same order whatever the thread count.
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <vector>

#include "minidl/error.h"
#include "minidl/internal/kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace minidl::internal {
namespace {

// The A side of a tile, read where it lies: element (r, k) at a[r·lda + k], or a[k·lda + r] when transposed (in
// both layouts one index is contiguous, so A is not packed: at the small batches of training, packing A costs as
// much as the product). Rows past `rows` (a partial tile) read the last valid row again; their results are dropped.
template <bool kTransposed>
struct ARows {
  const float* a;
  int64_t lda, rows;
  bool padded = false;  ///< a packed panel, zero-padded to the kernel's MR rows: every row may be read
  float at(int r, int64_t k) const {
    const int64_t row = r < rows ? r : rows - 1;
    return kTransposed ? a[k * lda + row] : a[row * lda + k];
  }
  /// The same for a full tile (rows ≥ the kernel's MR): no clamp in the inner loop.
  float at_full(int r, int64_t k) const { return kTransposed ? a[k * lda + r] : a[r * lda + k]; }
};

// C[rows × cols] tile at c (row stride ldc) = (accumulate ? C : 0) + Σ_k A(r, k) · b[k·ldb + j]: b is an NR-column
// panel of op(B), k-major — packed (ldb = NR) or read in place from a row-major B (ldb = its row length); cols ≤ NR
// cuts a partial tile, whose columns past `cols` are neither read nor written.
template <bool kTransposed>
using Kernel = void (*)(int64_t kc, ARows<kTransposed> a, const float* b, int64_t ldb, float* c, int64_t ldc,
                        bool accumulate, int64_t cols);

// The portable kernel: plain loops the compiler vectorises for whatever the build targets.
template <int MR, int NR, bool kTransposed>
void kernel_portable(int64_t kc, ARows<kTransposed> a, const float* b, int64_t ldb, float* c, int64_t ldc,
                     bool accumulate, int64_t cols) {
  float acc[MR][NR] = {};
  for (int64_t k = 0; k < kc; ++k, b += ldb)
    for (int r = 0; r < MR; ++r) {
      const float ar = a.at(r, k);
      for (int j = 0; j < cols; ++j) acc[r][j] += ar * b[j];
    }
  for (int64_t r = 0; r < std::min<int64_t>(MR, a.rows); ++r)
    for (int64_t j = 0; j < cols; ++j) c[r * ldc + j] = (accumulate ? c[r * ldc + j] : 0.0f) + acc[r][j];
}

#if defined(__x86_64__)
// 12 rows × 32 columns: 24 zmm accumulators, two loads of b and 12 broadcasts of a per k. A partial panel loads b
// under a mask (kMasked); a full one without (masked loads cost ~10% in this loop).
template <bool kTransposed, bool kMasked, bool kFull>
__attribute__((target("avx512f"))) inline void tile_avx512(int64_t kc, ARows<kTransposed> a, const float* b,
                                                           int64_t ldb, __mmask16 m0, __mmask16 m1, __m512 (&acc)[12][2]) {
  for (int64_t k = 0; k < kc; ++k, b += ldb) {
    const __m512 b0 = kMasked ? _mm512_maskz_loadu_ps(m0, b) : _mm512_loadu_ps(b);
    const __m512 b1 = kMasked ? _mm512_maskz_loadu_ps(m1, b + 16) : _mm512_loadu_ps(b + 16);
#pragma GCC unroll 12
    for (int r = 0; r < 12; ++r) {
      const __m512 ar = _mm512_set1_ps(kFull ? a.at_full(r, k) : a.at(r, k));
      acc[r][0] = _mm512_fmadd_ps(ar, b0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(ar, b1, acc[r][1]);
    }
  }
}

template <bool kTransposed>
__attribute__((target("avx512f"))) void kernel_avx512(int64_t kc, ARows<kTransposed> a, const float* b, int64_t ldb,
                                                      float* c, int64_t ldc, bool accumulate, int64_t cols) {
  constexpr int MR = 12;
  const int64_t rows = std::min<int64_t>(MR, a.rows);
  const __mmask16 m0 = static_cast<__mmask16>(cols >= 16 ? 0xffff : (1u << cols) - 1);
  const __mmask16 m1 = static_cast<__mmask16>(cols >= 32 ? 0xffff : cols <= 16 ? 0 : (1u << (cols - 16)) - 1);
  __m512 acc[MR][2];
#pragma GCC unroll 12
  for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  const bool full = rows == MR || a.padded;
  if (cols == 32 && full) tile_avx512<kTransposed, false, true>(kc, a, b, ldb, m0, m1, acc);
  else if (full) tile_avx512<kTransposed, true, true>(kc, a, b, ldb, m0, m1, acc);
  else tile_avx512<kTransposed, true, false>(kc, a, b, ldb, m0, m1, acc);
#pragma GCC unroll 12
  for (int r = 0; r < MR; ++r) {
    if (r >= rows) break;
    float* row = c + r * ldc;
    __m512 v0 = acc[r][0], v1 = acc[r][1];
    if (accumulate) {
      v0 = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, row), v0);
      v1 = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, row + 16), v1);
    }
    _mm512_mask_storeu_ps(row, m0, v0);
    _mm512_mask_storeu_ps(row + 16, m1, v1);
  }
}

// 6 rows × 16 columns: 12 ymm accumulators, two loads of b and 6 broadcasts of a per k.
template <bool kTransposed>
__attribute__((target("avx2,fma"))) void kernel_avx2(int64_t kc, ARows<kTransposed> a, const float* b, int64_t ldb,
                                                     float* c, int64_t ldc, bool accumulate, int64_t cols) {
  constexpr int MR = 6;
  const int64_t rows = std::min<int64_t>(MR, a.rows);
  alignas(32) int32_t lanes[16];
  for (int j = 0; j < 16; ++j) lanes[j] = j < cols ? -1 : 0;
  const __m256i m0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(lanes)),
                m1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(lanes + 8));
  __m256 acc[MR][2];
#pragma GCC unroll 6
  for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  for (int64_t k = 0; k < kc; ++k, b += ldb) {
    const __m256 b0 = _mm256_maskload_ps(b, m0), b1 = _mm256_maskload_ps(b + 8, m1);
#pragma GCC unroll 6
    for (int r = 0; r < MR; ++r) {
      const __m256 ar = _mm256_set1_ps(a.at(r, k));
      acc[r][0] = _mm256_fmadd_ps(ar, b0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(ar, b1, acc[r][1]);
    }
  }
  alignas(32) float tile[MR][16];
#pragma GCC unroll 6
  for (int r = 0; r < MR; ++r) {
    _mm256_store_ps(tile[r], acc[r][0]);
    _mm256_store_ps(tile[r] + 8, acc[r][1]);
  }
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) c[r * ldc + j] = (accumulate ? c[r * ldc + j] : 0.0f) + tile[r][j];
}
#endif

// Packs depth [p0, p0 + kc) × NR-column panel j0 of op(B), k-major, zero-padding a partial panel.
template <int NR>
void pack_b_panel(const MatrixArg& b, int64_t p0, int64_t kc, int64_t j0, int64_t cols, float* out) {
  for (int64_t k = 0; k < kc; ++k) {
    float* dst = out + k * NR;
    if (b.transposed) {  // op(B)(p, j) = B[j, p]
      for (int64_t j = 0; j < cols; ++j) dst[j] = b.data[(j0 + j) * b.cols + p0 + k];
    } else {
      const float* src = b.data + (p0 + k) * b.cols + j0;
      for (int64_t j = 0; j < cols; ++j) dst[j] = src[j];
    }
    for (int64_t j = cols; j < NR; ++j) dst[j] = 0.0f;
  }
}

// Packs rows [i0, i0 + rows) of a transposed op(A), all of its depth, into MR-row panels: panel i holds
// element (r, k) at [i·MR·K + k·MR + r] — itself a transposed A with lda = MR, which the kernel reads unchanged.
// The last panel is padded with zeros.
template <int MR>
void pack_a_transposed(const MatrixArg& a, int64_t i0, int64_t rows, float* out) {
  const int64_t k = a.out_cols();
  for (int64_t ir = 0; ir < rows; ir += MR, out += MR * k) {
    const int64_t mr = std::min<int64_t>(MR, rows - ir);
    for (int64_t p = 0; p < k; ++p) {
      const float* src = a.data + p * a.cols + i0 + ir;  // contiguous: the rows of op(A) are A's columns
      float* dst = out + p * MR;
      for (int64_t r = 0; r < mr; ++r) dst[r] = src[r];
      for (int64_t r = mr; r < MR; ++r) dst[r] = 0.0f;
    }
  }
}

// Grow-only scratch, reused across calls: a training step allocates nothing here after its first.
thread_local std::vector<float> t_packed_b, t_packed_a, t_partial;
float* scratch(std::vector<float>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
  return v.data();
}

// The product with one kernel shape. Blocking: KC of depth (a B micro-panel stays in L1 while the row tiles
// stream), MC rows per work item. op(B) is packed into NR-column panels once, by all threads together — unless it
// is a row-major block small enough to stay in L2, or a single panel (already the packed layout), which the kernel
// then reads in place (at training's small batches packing it costs about what a second core saves). Work items are
// (depth part, row block, column panel), row-block-major, so that a row block of A stays in L2 across its panels
// (panel-major order streamed A from L3 once per panel: 80 instead of 125 GF/s for xᵀ·g at 1024). Thread t of T
// takes items [items·t/T, items·(t+1)/T): contiguous rows, the same every step. Which thread computes an item never
// changes what it computes.
template <int MR, int NR, bool kTransposed>
void product(Kernel<kTransposed> kernel, const MatrixArg& a, const MatrixArg& b, float* c, bool accumulate,
             bool threaded) {
  const int64_t m = a.out_rows(), n = b.out_cols(), k = a.out_cols();
  // Blocks of equal size, at most kMaxKC deep and 16·MR rows: a thin last block (784 = 3·256 + 16) would pay a
  // tile's loads and stores for a few multiply-adds. A transposed A puts each depth step of a tile on its own cache
  // line; 128 deep keeps those lines and the B panel in L1 together (256 deep: 82 GF/s for xᵀ·g at 1024, 128: see
  // docs/performance.md).
  constexpr int64_t kMaxKC = kTransposed ? 128 : 256, kMaxMC = 16 * MR, kInPlaceFloats = 1 << 17;  // 512 KB
  const int64_t k_blocks = (k + kMaxKC - 1) / kMaxKC, KC = (k + k_blocks - 1) / k_blocks;
  const int64_t row_blocks = (m + kMaxMC - 1) / kMaxMC, MC = ((m + row_blocks - 1) / row_blocks + MR - 1) / MR * MR;
  const int64_t panels = (n + NR - 1) / NR;
  const bool in_place = !b.transposed && (k * n <= kInPlaceFloats || panels == 1);
  // A transposed A is read a cache line per depth step; where each row block serves several panels, it is packed
  // once per block (all of its depth) into contiguous, zero-padded panels instead (xᵀ·g at 1024: 80 -> 125 GF/s).
  // Packing also where a block serves one or two panels was slower on every shape measured (a convolution's
  // kernel gradient 5.5 -> 7.1 ms), alternating both rules in one process.
  const bool pack_a = kTransposed && panels >= 4;
  // The depth is cut into `parts`, each summed into its own copy of C, and the copies then added in order:
  // - a small result of a long product (a convolution's kernel gradient: 9 × 32 over 86,528 rows) has too few items
  //   to share otherwise;
  // - a weight gradient (xᵀ·g: a transposed A read in place, its depth the batch) cut by rows would have every
  //   thread read a cache line of every sample, most of them gathered and written by the other thread; cut in two by
  //   depth, each thread reads the samples it gathered and ran forward (the document model at batch 256 on two
  //   threads: this product's CPU time, copies added, 1.99 -> 1.19 s over 3,600 steps; docs/performance.md).
  // The cut depends on the shape alone (and on the thread count only where cutting or not gives the same bits,
  // below), so the sums do not depend on the thread count.
  constexpr int64_t kMinItems = 8, kMinPartBlocks = 8, kMaxPartFloats = 1 << 16;
  const int64_t tiles = panels * row_blocks;
  const int64_t parts_to_share =
      tiles >= kMinItems ? 1 : std::clamp<int64_t>(k_blocks / kMinPartBlocks, 1, (kMinItems + tiles - 1) / tiles);
  // At two depth blocks, cutting adds the same two block sums in the same order as not cutting (part 1's copy is
  // 0 + its sum, which is its sum), so a product on one thread skips the copy there (3% of a batch-256 step) with
  // the same bits. Accumulating, a −0 could come out +0 through the copy, so it cuts then whatever the threads.
  const bool cut_by_sample = kTransposed && (k_blocks > 2 || threaded || accumulate);
  const int64_t parts_by_sample = cut_by_sample ? std::min<int64_t>(k_blocks, 2) : 1;
  const int64_t parts = pack_a || m * n > kMaxPartFloats ? 1 : std::max(parts_to_share, parts_by_sample);
  const int64_t items = parts * tiles;
  constexpr int64_t kCombineChunk = 1024;  // elements added part by part while they stay in L1
  const int64_t panel_stride = KC * NR;  // one packed panel of one depth block
  float* packed_b = in_place ? nullptr : scratch(t_packed_b, k_blocks * panels * panel_stride);
  float* partial = parts > 1 ? scratch(t_partial, (parts - 1) * m * n) : nullptr;
#pragma omp parallel if (threaded)
  {
    if (!in_place) {
#pragma omp for schedule(static) collapse(2)
      for (int64_t q = 0; q < k_blocks; ++q)
        for (int64_t p = 0; p < panels; ++p) {
          const int64_t p0 = q * KC, kc = std::min(KC, k - p0), j0 = p * NR;
          pack_b_panel<NR>(b, p0, kc, j0, std::min<int64_t>(NR, n - j0), packed_b + (q * panels + p) * panel_stride);
        }
      // (implicit barrier: B is packed before any item reads it)
    }
    const int64_t threads = omp_get_num_threads(), t = omp_get_thread_num();
    float* packed_a = pack_a ? scratch(t_packed_a, MC * k) : nullptr;
    int64_t packed_block = -1;
    for (int64_t item = items * t / threads; item < items * (t + 1) / threads; ++item) {
      const int64_t part = item / tiles, p = item % panels, i0 = item % tiles / panels * MC, rows = std::min(MC, m - i0);
      if (pack_a && packed_block != i0) pack_a_transposed<MR>(a, i0, rows, packed_a), packed_block = i0;
      const int64_t j0 = p * NR, cols = std::min<int64_t>(NR, n - j0);
      const int64_t q0 = k_blocks * part / parts, q1 = k_blocks * (part + 1) / parts;
      // Part 0 sums straight into C (onto C's values when accumulating), the others into their copies.
      float* out = part == 0 ? c : partial + (part - 1) * m * n;
      for (int64_t q = q0; q < q1; ++q) {
        const int64_t p0 = q * KC, kc = std::min(KC, k - p0);
        const bool add = (accumulate && part == 0) || q > q0;
        const float* bp = in_place ? b.data + p0 * b.cols + j0 : packed_b + (q * panels + p) * panel_stride;
        const int64_t ldb = in_place ? b.cols : NR;
        for (int64_t ir = 0; ir < rows; ir += MR) {
          const int64_t i = i0 + ir;  // op(A)'s tile: rows i.., depth p0..
          if (pack_a) {
            const float* at = packed_a + ir * k + p0 * MR;
            kernel(kc, ARows<kTransposed>{at, MR, std::min<int64_t>(MR, rows - ir), true}, bp, ldb, out + i * n + j0,
                   n, add, cols);
            continue;
          }
          const float* at = kTransposed ? a.data + p0 * a.cols + i : a.data + i * a.cols + p0;
          kernel(kc, ARows<kTransposed>{at, a.cols, rows - ir}, bp, ldb, out + i * n + j0, n, add, cols);
        }
      }
    }
    if (parts > 1) {
#pragma omp barrier
      // C += each copy in turn: the same additions, in the same order, as one sum over the parts per element.
#pragma omp for schedule(static)
      for (int64_t e0 = 0; e0 < m * n; e0 += kCombineChunk) {
        float* __restrict dst = c + e0;
        const int64_t len = std::min(kCombineChunk, m * n - e0);
        for (int64_t part = 1; part < parts; ++part) {
          const float* __restrict src = partial + (part - 1) * m * n + e0;
          for (int64_t e = 0; e < len; ++e) dst[e] += src[e];
        }
      }
    }
  }
}

template <int MR, int NR>
void product(Kernel<false> plain, Kernel<true> transposed, const MatrixArg& a, const MatrixArg& b, float* c,
             bool accumulate, bool threaded) {
  if (a.transposed) product<MR, NR, true>(transposed, a, b, c, accumulate, threaded);
  else product<MR, NR, false>(plain, a, b, c, accumulate, threaded);
}

enum class Isa { avx512, avx2, portable };

Isa detect() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return Isa::avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::avx2;
#endif
  return Isa::portable;
}

Isa& forced() {
  static Isa isa = detect();
  return isa;
}

// Below this many FLOPs a product runs on the calling thread. A parallel region costs ~1 us, and alone the
// document model's 3.2 MFLOP products run 1.4x faster on two threads; but inside a training step splitting them
// made the step slower: the other core must fetch the weights and activations this core last wrote (measured
// alternating 1 and 2 threads in one process: batch 32 went 110 -> 150 us per step). Batch 256's 26 MFLOP products
// gain.
constexpr double kParallelFlops = 8e6;

std::atomic<uint64_t> g_threaded_products{0};
}  // namespace

uint64_t threaded_product_count() { return g_threaded_products.load(std::memory_order_relaxed); }

const char* gemm_kernel_name() {
  switch (forced()) {
    case Isa::avx512: return "avx512 12x32";
    case Isa::avx2: return "avx2 6x16";
    case Isa::portable: return "portable 4x8";
  }
  return "?";
}

bool use_gemm_kernel(const std::string& name) {
  const Isa wanted = name == "avx512" ? Isa::avx512 : name == "avx2" ? Isa::avx2 : Isa::portable;
  if (name != "avx512" && name != "avx2" && name != "portable") fail("use_gemm_kernel: unknown kernel '", name, "'");
  if (wanted != Isa::portable && static_cast<int>(wanted) < static_cast<int>(detect())) return false;
  forced() = wanted;
  return true;
}

void gemm(const MatrixArg& a, const MatrixArg& b, float* out, bool accumulate) {
  const int64_t m = a.out_rows(), n = b.out_cols(), k = a.out_cols();
  MINIDL_ASSERT(b.out_rows() == k);
  if (m == 0 || n == 0) return;
  if (k == 0) {
    if (!accumulate) std::fill_n(out, m * n, 0.0f);
    return;
  }
  const bool threaded = 2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k) >= kParallelFlops &&
                        omp_get_max_threads() > 1 && !omp_in_parallel();
  if (threaded) g_threaded_products.fetch_add(1, std::memory_order_relaxed);
  switch (forced()) {
#if defined(__x86_64__)
    case Isa::avx512: product<12, 32>(kernel_avx512<false>, kernel_avx512<true>, a, b, out, accumulate, threaded); return;
    case Isa::avx2: product<6, 16>(kernel_avx2<false>, kernel_avx2<true>, a, b, out, accumulate, threaded); return;
#endif
    default:
      product<4, 8>(kernel_portable<4, 8, false>, kernel_portable<4, 8, true>, a, b, out, accumulate, threaded);
      return;
  }
}

}  // namespace minidl::internal
