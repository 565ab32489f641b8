// Tests of Keras BatchNormalization: forward in both modes against the formulas of docs/keras.md, the fused backward
// against autodiff through moments + batch_normalization, moving statistics as a closed-form EMA.
#include <cmath>

#include "helpers.h"
#include "minidl/nn.h"

using namespace minidl;
using minidl::test::param;
using minidl::test::require_grad_ok;
using minidl::test::require_values;
using Inputs = std::vector<Tensor>;

namespace {
// Per-channel batch mean and biased variance of x [N, C], in double.
void batch_stats(const Tensor& x, std::vector<double>& mean, std::vector<double>& var) {
  const int64_t n = x.size(0), c = x.size(1);
  mean.assign(c, 0.0);
  var.assign(c, 0.0);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t k = 0; k < c; ++k) mean[k] += x.at({r, k}) / double(n);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t k = 0; k < c; ++k) var[k] += std::pow(x.at({r, k}) - mean[k], 2) / double(n);
}

void require_close(const Tensor& a, const Tensor& b, double rel) {
  REQUIRE(a.shape() == b.shape());
  for (int64_t i = 0; i < a.numel(); ++i) {
    INFO("element " << i << ": " << a.data()[i] << " vs " << b.data()[i]);
    REQUIRE(std::abs(a.data()[i] - b.data()[i]) <= rel * std::max(1.0f, std::abs(b.data()[i])));
  }
}
}  // namespace

TEST_CASE("training forward: batch mean, biased variance, eps inside the sqrt, moving update", "[batchnorm]") {
  BatchNormalization bn(3, {.momentum = 0.9f, .epsilon = 1e-3f});
  Generator gen(5);
  bn.gamma().copy_(Tensor::uniform({3}, 0.5f, 2.0f, gen));
  bn.beta().copy_(Tensor::uniform({3}, -1.0f, 1.0f, gen));
  const Tensor x = Tensor::uniform({6, 3}, -2.0f, 3.0f, gen);
  const Tensor y = bn(x);
  std::vector<double> mean, var;
  batch_stats(x, mean, var);
  for (int64_t r = 0; r < 6; ++r)
    for (int64_t k = 0; k < 3; ++k) {
      const double expected = bn.gamma().at({k}) * (x.at({r, k}) - mean[k]) / std::sqrt(var[k] + 1e-3) +
                              bn.beta().at({k});
      REQUIRE(y.at({r, k}) == Approx(expected).epsilon(1e-5));
    }
  for (int64_t k = 0; k < 3; ++k) {
    CHECK(bn.moving_mean().at({k}) == Approx(0.0 * 0.9 + mean[k] * 0.1).epsilon(1e-6));
    CHECK(bn.moving_variance().at({k}) == Approx(1.0 * 0.9 + var[k] * 0.1).epsilon(1e-6));
  }
}

TEST_CASE("the worked check of docs/keras.md §1: x = [1,2,3,4], momentum 0", "[batchnorm]") {
  BatchNormalization bn(1, {.momentum = 0.0f});
  bn(Tensor::from({4, 1}, {1, 2, 3, 4}));
  CHECK(bn.moving_mean().item() == 2.5f);
  CHECK(bn.moving_variance().item() == 1.25f);  // biased: the Dense-input case
}

TEST_CASE("inference forward uses the moving statistics and leaves them untouched", "[batchnorm]") {
  BatchNormalization bn(2);
  bn.moving_mean().copy_(Tensor::from({2}, {1.0f, -2.0f}));
  bn.moving_variance().copy_(Tensor::from({2}, {4.0f, 0.25f}));
  bn.gamma().copy_(Tensor::from({2}, {2.0f, 1.0f}));
  bn.beta().copy_(Tensor::from({2}, {0.5f, 0.0f}));
  bn.eval();
  const Tensor y = bn(Tensor::from({2, 2}, {3.0f, -2.0f, 1.0f, 0.0f}));
  const float i0 = 1.0f / std::sqrt(4.0f + 1e-3f), i1 = 1.0f / std::sqrt(0.25f + 1e-3f);
  require_values(y, {2, 2}, {2.0f * 2.0f * i0 + 0.5f, 0.0f, 0.5f, 2.0f * i1}, 1e-6f);
  require_values(bn.moving_mean(), {2}, {1.0f, -2.0f});
  require_values(bn.moving_variance(), {2}, {4.0f, 0.25f});
}

TEST_CASE("moving statistics after k steps equal the closed-form EMA", "[batchnorm]") {
  const float momentum = 0.8f;
  BatchNormalization bn(4, {.momentum = momentum});
  Generator gen(9);
  std::vector<std::vector<double>> means, vars;
  for (int step = 0; step < 5; ++step) {
    const Tensor x = Tensor::uniform({8, 4}, -1.0f + step, 2.0f + step, gen);
    std::vector<double> m, v;
    batch_stats(x, m, v);
    means.push_back(m);
    vars.push_back(v);
    bn(x);
  }
  // m_k = m_0 μ^k + (1 − μ) Σ_j μ^(k−1−j) batch_j with m_0 = 0 (mean) and 1 (variance).
  for (int64_t c = 0; c < 4; ++c) {
    double mean = 0.0, var = std::pow(momentum, 5);
    for (int j = 0; j < 5; ++j) {
      mean += (1 - momentum) * std::pow(momentum, 4 - j) * means[j][c];
      var += (1 - momentum) * std::pow(momentum, 4 - j) * vars[j][c];
    }
    CHECK(bn.moving_mean().at({c}) == Approx(mean).epsilon(1e-5));
    CHECK(bn.moving_variance().at({c}) == Approx(var).epsilon(1e-5));
  }
}

TEST_CASE("trainable = false neither updates nor uses batch statistics", "[batchnorm]") {
  BatchNormalization frozen(2), reference(2);
  frozen.set_trainable(false);
  CHECK(frozen.parameters().empty());
  CHECK(frozen.named_parameters().size() == 2);
  reference.eval();
  const Tensor x = Tensor::from({3, 2}, {1, 2, 3, 4, 5, 9});
  CHECK(frozen.is_training());
  require_values(frozen(x), {3, 2}, reference(x).to_vector());
  require_values(frozen.moving_mean(), {2}, {0, 0});
  require_values(frozen.moving_variance(), {2}, {1, 1});
}

TEST_CASE("a training batch of one sample is refused, naming the layer and the fix", "[batchnorm]") {
  BatchNormalization bn(3, {}, "bn");
  CHECK_THROWS_WITH(bn(Tensor::zeros({1, 3})), Catch::StartsWith("BatchNormalization 'bn': a training batch needs at "
                                                                 "least 2 samples, got 1") &&
                                                   Catch::Contains("use a larger batch"));
  bn.eval();
  CHECK_NOTHROW(bn(Tensor::zeros({1, 3})));
  CHECK_THROWS_WITH(bn(Tensor::zeros({2, 4})), "BatchNormalization 'bn': expects 3 features on the last axis, got [2,4]");
  CHECK_THROWS_WITH(BatchNormalization(3, {.momentum = 1.5f}, "b2"), Catch::Contains("momentum must be in [0, 1]"));
}

TEST_CASE("fused training backward equals autodiff through moments + batch_normalization", "[batchnorm]") {
  // The second shape is above the threading threshold, with channels that split unevenly between threads.
  const auto [n, c] = GENERATE(std::pair<int64_t, int64_t>{16, 5}, std::pair<int64_t, int64_t>{600, 301});
  INFO("x [" << n << ", " << c << "]");
  const Tensor x = param({n, c}, 1, -2.0f, 3.0f), gamma = param({c}, 2, 0.5f, 2.0f), beta = param({c}, 3);
  const Tensor upstream = Tensor::uniform({n, c}, -1.0f, 1.0f);
  Tensor mean_f, var_f;
  const Tensor fused = batch_norm_train(x, gamma, beta, 1e-3f, mean_f, var_f);
  fused.backward(upstream);
  const Tensor dx_f = x.grad().clone(), dg_f = gamma.grad().clone(), db_f = beta.grad().clone();
  for (Tensor t : {x, gamma, beta}) t.zero_grad();

  const auto [mean, var] = moments(x, {0});
  const Tensor composed = batch_normalization(x, mean, var, beta, gamma, 1e-3f);
  composed.backward(upstream);
  require_close(fused, composed, 1e-5);
  require_close(mean_f, mean, 1e-6);
  require_close(var_f, var, 1e-6);
  require_close(dx_f, x.grad(), 1e-5);
  // dγ and dβ sum n terms; the composed graph sums them in float, the fused kernel in double, so the
  // difference grows with n (measured 1.1e-5 at n = 600; a wrong term would be off by ~0.1).
  const double sum_tolerance = 1e-5 * std::max<double>(1.0, static_cast<double>(n) / 100.0);
  require_close(dg_f, gamma.grad(), sum_tolerance);
  require_close(db_f, beta.grad(), sum_tolerance);
}

TEST_CASE("fused inference backward equals autodiff through batch_normalization", "[batchnorm]") {
  const Tensor x = param({8, 4}, 1), gamma = param({4}, 2, 0.5f, 2.0f), beta = param({4}, 3);
  const Tensor mm = Tensor::from({4}, {0.1f, -0.3f, 0.5f, 0.0f}), mv = Tensor::from({4}, {0.5f, 1.5f, 2.0f, 0.8f});
  const Tensor upstream = Tensor::uniform({8, 4}, -1.0f, 1.0f);
  const Tensor fused = batch_norm_inference(x, mm, mv, gamma, beta, 1e-3f);
  fused.backward(upstream);
  const Tensor dx_f = x.grad().clone(), dg_f = gamma.grad().clone(), db_f = beta.grad().clone();
  for (Tensor t : {x, gamma, beta}) t.zero_grad();
  const Tensor composed = batch_normalization(x, mm, mv, beta, gamma, 1e-3f);
  composed.backward(upstream);
  require_close(fused, composed, 1e-5);
  require_close(dx_f, x.grad(), 1e-5);
  require_close(dg_f, gamma.grad(), 1e-5);
  require_close(db_f, beta.grad(), 1e-5);
}

TEST_CASE("grad of fused and composed batch norm, training and inference", "[batchnorm]") {
  const Tensor x = param({6, 3}, 1, -2.0f, 2.0f), gamma = param({3}, 2, 0.5f, 2.0f), beta = param({3}, 3);
  const Tensor mm = Tensor::from({3}, {0.2f, -0.1f, 0.4f}), mv = Tensor::from({3}, {0.7f, 1.3f, 0.9f});
  require_grad_ok(
      [](const Inputs& p) {
        Tensor m, v;
        return batch_norm_train(p[0], p[1], p[2], 1e-3f, m, v);
      },
      {x, gamma, beta});
  require_grad_ok(
      [](const Inputs& p) {
        const auto [m, v] = moments(p[0], {0}, true);
        return batch_normalization(p[0], m, v, p[2], p[1], 1e-3f);
      },
      {x, gamma, beta});
  require_grad_ok([&](const Inputs& p) { return batch_norm_inference(p[0], mm, mv, p[1], p[2], 1e-3f); },
                  {x, gamma, beta});
  require_grad_ok([&](const Inputs& p) { return batch_normalization(p[0], mm, mv, p[2], p[1], 1e-3f); },
                  {x, gamma, beta});
}

TEST_CASE("grad when one op writes a fresh gradient buffer and the others add to it", "[batchnorm]") {
  // x feeds relu, matmul, linear and the fused batch norm: whichever backward runs first writes x's gradient
  // without zero-filling it, the others add. Twice through, the second backward adds to kept leaf gradients.
  const Tensor x = minidl::test::param_away_from({6, 4}, 1, {0.0f}), w = param({4, 4}, 2), b = param({4}, 3);
  const auto f = [](const Inputs& p) {
    Tensor mean, variance;
    return relu(p[0]) + matmul(p[0], p[1]) + linear(p[0], p[1], p[2]) +
           batch_norm_train(p[0], Tensor(), Tensor(), 1e-3f, mean, variance);
  };
  require_grad_ok(f, {x, w, b});
  const Tensor upstream = Tensor::uniform({6, 4}, -1, 1);
  f({x, w, b}).backward(upstream);
  const std::vector<float> once = x.grad().to_vector();
  f({x, w, b}).backward(upstream);
  for (size_t i = 0; i < once.size(); ++i) REQUIRE(x.grad().data()[i] == Approx(2 * once[i]).margin(1e-6));
}

TEST_CASE("moments returns the mean and biased variance, with or without keepdims", "[batchnorm]") {
  const Tensor x = Tensor::from({4, 1}, {1, 2, 3, 4});
  const auto [m, v] = moments(x, {0});
  require_values(m, {1}, {2.5f});
  require_values(v, {1}, {1.25f});
  const auto [mk, vk] = moments(reshape(x, {2, 2}), {0, 1}, true);
  require_values(mk, {1, 1}, {2.5f});
  require_values(vk, {1, 1}, {1.25f});
}

TEST_CASE("center and scale can be switched off", "[batchnorm]") {
  BatchNormalization bn(2, {.center = false, .scale = false});
  CHECK(bn.named_parameters().empty());
  CHECK_FALSE(bn.gamma().defined());
  const Tensor y = bn(Tensor::from({2, 2}, {0, 1, 2, 3}));
  const float z = 1.0f / std::sqrt(1.0f + 1e-3f);
  require_values(y, {2, 2}, {-z, -z, z, z}, 1e-6f);
}
