// Tests of the tensor core: shapes, factories, element access, storage sharing, printing, the generator.
#include <algorithm>
#include <set>

#include <omp.h>

#include "helpers.h"

using namespace minidl;
using minidl::test::require_values;

TEST_CASE("shapes print, count and reject bad axes", "[tensor]") {
  const Shape s{32, 784};
  CHECK(s.str() == "[32,784]");
  CHECK(s.numel() == 32 * 784);
  CHECK(s.dim(-1) == 784);
  CHECK(Shape{}.numel() == 1);
  CHECK(Shape{}.str() == "[]");
  CHECK_THROWS_WITH(s.dim(2), "axis 2 is out of range for shape [32,784]");
  CHECK_THROWS_AS(Shape({1, 2, 3, 4, 5, 6, 7}), Error);
  CHECK_THROWS_AS(Shape({2, -1}), Error);
}

TEST_CASE("factories fill, copy and check their values", "[tensor]") {
  require_values(Tensor::zeros({2, 2}), {2, 2}, {0, 0, 0, 0});
  require_values(Tensor::ones({3}), {3}, {1, 1, 1});
  require_values(Tensor::full({1, 2}, 2.5f), {1, 2}, {2.5f, 2.5f});
  CHECK(Tensor::scalar(4.0f).item() == 4.0f);
  CHECK(Tensor::scalar(4.0f).dim() == 0);
  const Tensor t = Tensor::from({2, 3}, {1, 2, 3, 4, 5, 6});
  CHECK(t.at({1, 2}) == 6.0f);
  CHECK(t.at({0, 1}) == 2.0f);
  CHECK_THROWS_WITH(Tensor::from({2, 3}, {1, 2}), "Tensor::from: shape [2,3] holds 6 values, got 2");
  CHECK_THROWS_WITH(t.at({2, 0}), "Tensor::at: index 2 out of range for axis 0 of [2,3]");
  CHECK_THROWS_WITH(t.item(), "Tensor::item: needs a tensor of one element, got shape [2,3]");
  CHECK_THROWS_WITH(Tensor().shape(), "Tensor: use of an undefined tensor");
  const Tensor rank4 = Tensor::zeros({2, 3, 4, 5});
  CHECK(rank4.numel() == 120);
  CHECK(rank4.size(-2) == 4);
}

TEST_CASE("handles share storage, clone copies, reshape shares", "[tensor]") {
  Tensor a = Tensor::from({2, 2}, {1, 2, 3, 4});
  Tensor alias = a;
  Tensor copy = a.clone();
  Tensor view = reshape(a, {4});
  a.at({0, 0}) = 9.0f;
  CHECK(alias.at({0, 0}) == 9.0f);
  CHECK(view.at({0}) == 9.0f);
  CHECK(copy.at({0, 0}) == 1.0f);
  Tensor d = a.detach();
  CHECK(d.data() == a.data());
  CHECK_FALSE(d.requires_grad());
  copy.copy_(a);
  CHECK(copy.at({0, 0}) == 9.0f);
  CHECK_THROWS_AS(copy.copy_(Tensor::zeros({3})), Error);
}

TEST_CASE("printing shows the shape and the values, summarised when large", "[tensor]") {
  const Tensor t = Tensor::from({2, 2}, {1, 2, 3, 4});
  CHECK(t.str() == "Tensor[2,2]\n[[1, 2],\n [3, 4]]");
  const std::string big = Tensor::zeros({2000}).str();
  CHECK(big.find("...") != std::string::npos);
  CHECK(big.size() < 100);
}

TEST_CASE("the generator repeats itself for a seed and differs between seeds", "[tensor]") {
  Generator a(7), b(7), c(8);
  std::vector<uint64_t> xa, xb, xc;
  for (int i = 0; i < 5; ++i) {
    xa.push_back(a.next_u64());
    xb.push_back(b.next_u64());
    xc.push_back(c.next_u64());
  }
  CHECK(xa == xb);
  CHECK(xa != xc);
  a.seed(7);
  CHECK(a.next_u64() == xa[0]);
  // The state round-trips, so a checkpoint can resume the stream exactly.
  const auto state = b.state();
  const uint64_t next = b.next_u64();
  b.set_state(state);
  CHECK(b.next_u64() == next);
  manual_seed(3);
  const float first = default_generator().uniform();
  manual_seed(3);
  CHECK(default_generator().uniform() == first);
}

TEST_CASE("uniform, normal and permutations have the right distribution", "[tensor]") {
  Generator gen(1);
  const Tensor u = Tensor::uniform({20000}, -2.0f, 3.0f, gen);
  double total = 0.0;
  for (float v : u.values()) {
    REQUIRE(v >= -2.0f);
    REQUIRE(v < 3.0f);
    total += v;
  }
  CHECK(total / u.numel() == Approx(0.5).margin(0.05));
  const Tensor n = Tensor::normal({20000}, 1.0f, 2.0f, gen);
  double m = 0.0, sq = 0.0;
  for (float v : n.values()) m += v;
  m /= n.numel();
  for (float v : n.values()) sq += (v - m) * (v - m);
  CHECK(m == Approx(1.0).margin(0.05));
  CHECK(std::sqrt(sq / n.numel()) == Approx(2.0).margin(0.05));
  std::vector<int32_t> p = gen.permutation(1000);
  std::sort(p.begin(), p.end());
  for (int32_t i = 0; i < 1000; ++i) REQUIRE(p[i] == i);
  std::set<uint64_t> seen;
  for (int i = 0; i < 1000; ++i) seen.insert(gen.below(3));
  CHECK(seen == std::set<uint64_t>{0, 1, 2});
}

TEST_CASE("flushing denormals turns subnormal results into zero on every thread, and is restored", "[tensor]") {
  volatile float tiny = 1e-30f, small = 1e-10f;  // their product, 1e-40, is subnormal
  {
    const FlushDenormalGuard guard;
    CHECK(tiny * small == 0.0f);
    int flushed = 0;
#pragma omp parallel reduction(+ : flushed)
    flushed += (tiny * small == 0.0f) ? 1 : 0;
    CHECK(flushed == omp_get_max_threads());
  }
  CHECK(tiny * small != 0.0f);  // the previous setting is back
}
