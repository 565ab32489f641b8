// Tests of minidl's matrix product (core/src/gemm.cpp): every micro-kernel this CPU has and every path of the
// driver (B read in place or packed, a transposed A packed or read in place, partial tiles, several depth
// blocks, depth cut into parts, accumulation, k = 0) against a double-precision reference; the threaded shapes for every transpose;
// accumulation into a bias; bit-identical results for 1 and 2 threads; and the count of threaded products.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <tuple>
#include <vector>

#include "helpers.h"
#include "minidl/core.h"
#include "minidl/internal/kernels.h"

using namespace minidl;
using minidl::test::with_threads;

namespace {
// op(a)·op(b) + bias in double, and Σ|op(a)||op(b)| per element for the rounding bound.
struct Reference {
  std::vector<double> value, magnitude;
};
Reference reference(const Tensor& a, const Tensor& b, bool ta, bool tb, const Tensor& bias = Tensor()) {
  const int64_t m = ta ? a.size(1) : a.size(0), k = ta ? a.size(0) : a.size(1), n = tb ? b.size(0) : b.size(1);
  const auto at = [&](int64_t i, int64_t p) { return double(ta ? a.data()[p * m + i] : a.data()[i * k + p]); };
  const auto bt = [&](int64_t p, int64_t j) { return double(tb ? b.data()[j * k + p] : b.data()[p * n + j]); };
  Reference r{std::vector<double>(size_t(m * n)), std::vector<double>(size_t(m * n))};
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double sum = bias.defined() ? bias.data()[j] : 0.0, mag = std::abs(sum);
      for (int64_t p = 0; p < k; ++p) {
        sum += at(i, p) * bt(p, j);
        mag += std::abs(at(i, p) * bt(p, j));
      }
      r.value[size_t(i * n + j)] = sum;
      r.magnitude[size_t(i * n + j)] = mag;
    }
  return r;
}

// Every element within a float rounding bound of the reference: far below the error a wrong block, a missed
// depth block or a transposed index would make (of the order of the values themselves).
void require_close(const Tensor& got, const Reference& want) {
  REQUIRE(static_cast<size_t>(got.numel()) == want.value.size());
  int64_t bad = 0;
  double worst = 0.0;
  for (size_t i = 0; i < want.value.size(); ++i) {
    const double error = std::abs(double(got.data()[i]) - want.value[i]);
    worst = std::max(worst, error / (want.magnitude[i] + 1e-30));
    if (error > 1e-5 * want.magnitude[i] + 1e-6) ++bad;
  }
  INFO("worst error relative to sum |a||b|: " << worst);
  CHECK(bad == 0);
}


// (m, n, k) above the 8 MFLOP threading threshold, chosen to reach each path: sizes that are no multiple of any
// kernel's tile, several depth blocks (k > 256), thin results (n = 10), few rows (m = 20), wide results whose
// transposed A is packed (n ≥ 128), a small result of a long product (10 x 10, k = 50,000), and the document
// model's first layer at batch 256, whose weight gradient (two depth blocks) is cut by samples on two threads only.
const std::vector<std::tuple<int64_t, int64_t, int64_t>> kShapes = {
    {301, 203, 517}, {131, 97, 1100}, {700, 10, 900}, {20, 900, 700}, {1000, 13, 640}, {10, 10, 50000},
    {150, 300, 400}, {256, 64, 784}};
}  // namespace

TEST_CASE("threaded matrix products equal a double-precision reference for every transpose", "[linalg]") {
  for (const auto& [m, n, k] : kShapes)
    for (const bool ta : {false, true})
      for (const bool tb : {false, true}) {
        INFO("m " << m << " n " << n << " k " << k << " transpose_a " << ta << " transpose_b " << tb);
        Generator gen(static_cast<uint64_t>(m * 7 + n * 3 + k + ta * 2 + tb));
        const Tensor a = Tensor::uniform(ta ? Shape{k, m} : Shape{m, k}, -1, 1, gen);
        const Tensor b = Tensor::uniform(tb ? Shape{n, k} : Shape{k, n}, -1, 1, gen);
        require_close(matmul(a, b, ta, tb), reference(a, b, ta, tb));
      }
}

TEST_CASE("every micro-kernel this CPU has, on every path of the driver, equals the reference", "[linalg]") {
  // (m, n, k): one element; partial tiles in both directions; k·n below and above the in-place limit for B;
  // a transposed A wide enough to be packed; several depth blocks; a small result of a long product, whose depth
  // is cut into parts summed apart (and whose B, one panel of the widest kernel, is read in place); a weight
  // gradient's shape, whose transposed A every kernel reads in place and whose depth is cut in two.
  const std::vector<std::tuple<int64_t, int64_t, int64_t>> shapes = {
      {1, 1, 1}, {13, 33, 7}, {37, 70, 300}, {50, 200, 700}, {25, 1100, 129}, {200, 130, 600}, {9, 32, 9000},
      {100, 20, 400}};
  const std::string detected = internal::gemm_kernel_name();
  int kernels = 0;
  for (const char* kernel : {"avx512", "avx2", "portable"}) {
    if (!internal::use_gemm_kernel(kernel)) {
      WARN("this CPU has no " << kernel << " kernel: not tested here");
      continue;
    }
    ++kernels;
    for (const auto& [m, n, k] : shapes)
      for (const bool ta : {false, true})
        for (const bool tb : {false, true})
          for (const bool accumulate : {false, true}) {
            INFO(kernel << ": m " << m << " n " << n << " k " << k << " transpose_a " << ta << " transpose_b " << tb
                        << " accumulate " << accumulate);
            Generator gen(static_cast<uint64_t>(m * 5 + n * 3 + k));
            const Tensor a = Tensor::uniform(ta ? Shape{k, m} : Shape{m, k}, -1, 1, gen);
            const Tensor b = Tensor::uniform(tb ? Shape{n, k} : Shape{k, n}, -1, 1, gen);
            const Tensor start = Tensor::uniform({n}, -1, 1, gen);  // what accumulate adds onto, in every row
            Tensor c = Tensor::empty({m, n});
            for (int64_t i = 0; i < m; ++i) std::copy_n(start.data(), n, c.data() + i * n);
            internal::gemm({a.data(), a.size(0), a.size(1), ta}, {b.data(), b.size(0), b.size(1), tb}, c.data(), accumulate);
            require_close(c, reference(a, b, ta, tb, accumulate ? start : Tensor()));
          }
    // k = 0: a sum of nothing.
    Tensor c = Tensor::full({3, 4}, 5.0f);
    internal::gemm({nullptr, 3, 0, false}, {nullptr, 0, 4, false}, c.data(), true);
    CHECK(c.to_vector() == std::vector<float>(12, 5.0f));
    internal::gemm({nullptr, 3, 0, false}, {nullptr, 0, 4, false}, c.data(), false);
    CHECK(c.to_vector() == std::vector<float>(12, 0.0f));
  }
  CHECK(kernels >= 1);
  REQUIRE(internal::use_gemm_kernel(detected.substr(0, detected.find(' '))));  // back to this CPU's best
}

TEST_CASE("a large linear accumulates its product onto the bias", "[linalg]") {
  Generator gen(11);
  const Tensor x = Tensor::uniform({333, 517}, -1, 1, gen), w = Tensor::uniform({517, 271}, -1, 1, gen);
  const Tensor b = Tensor::uniform({271}, -1, 1, gen);
  require_close(linear(x, w, b), reference(x, w, false, false, b));
}

TEST_CASE("large products and their gradients are bit-identical with 1 and 2 threads", "[linalg]") {
  for (const auto& [m, n, k] : kShapes) {
    INFO("m " << m << " n " << n << " k " << k);
    Generator gen(static_cast<uint64_t>(m + n + k));
    Tensor x = test::param({m, k}, 1), w = test::param({k, n}, 2);
    const Tensor upstream = Tensor::uniform({m, n}, -1, 1, gen);
    // The output and both gradients, one after another, to compare in one go.
    const auto run = [&](int threads) {
      std::vector<float> values;
      with_threads(threads, [&] {
        x.zero_grad();
        w.zero_grad();
        const Tensor y = matmul(x, w);
        y.backward(upstream);
        for (const Tensor& t : {y, x.grad(), w.grad()}) values.insert(values.end(), t.data(), t.data() + t.numel());
        return y;
      });
      return values;
    };
    const std::vector<float> one = run(1), two = run(2);
    REQUIRE(one.size() == two.size());
    CHECK(std::memcmp(one.data(), two.data(), sizeof(float) * one.size()) == 0);
  }
}

TEST_CASE("products count the times they ran on several threads", "[linalg]") {
  constexpr int64_t kFeatures = 28 * 28, kUnits = 64;  // the document model's first layer
  Generator gen(3);
  const Tensor a = Tensor::uniform({256, kFeatures}, -1, 1, gen);   // batch 256: 25.7 MFLOP
  const Tensor small_a = Tensor::uniform({32, kFeatures}, -1, 1, gen);  // batch 32: 3.2 MFLOP
  const Tensor b = Tensor::uniform({kFeatures, kUnits}, -1, 1, gen);
  const uint64_t start = internal::threaded_product_count();
  with_threads(1, [&] { return matmul(a, b); });
  CHECK(internal::threaded_product_count() == start);
  with_threads(2, [&] { return matmul(small_a, b); });
  CHECK(internal::threaded_product_count() == start);
  with_threads(2, [&] { return matmul(a, b); });
  CHECK(internal::threaded_product_count() == start + 1);
}
