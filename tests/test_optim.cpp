// Tests of the optimizers against closed-form values computed here from docs/keras.md §3: Adam (including
// t = 1, where Keras's epsilon differs most from PyTorch's), amsgrad, SGD with momentum and Nesterov; and Adam's
// pass split between threads giving the bytes of its single pass.
#include <omp.h>

#include <cmath>

#include "helpers.h"
#include "minidl/internal/kernels.h"
#include "minidl/nn.h"
#include "minidl/optim.h"

using namespace minidl;

namespace {
// Sets p's gradient to g (p must be a leaf with requires_grad).
void set_grad(Tensor& p, const std::vector<float>& g) {
  p.zero_grad();
  sum(p * Tensor::from(p.shape(), g)).backward();
}

const std::vector<std::vector<float>> kGrads = {{0.5f, -1.0f, 1e-6f}, {0.1f, -0.2f, 3.0f}, {-0.3f, 0.0f, 2.0f},
                                                {0.2f, 0.4f, -1.0f}};
}  // namespace

TEST_CASE("Adam matches Keras's update step by step", "[optim]") {
  const double lr = 1e-2, b1 = 0.9, b2 = 0.999, eps = 1e-7;
  Tensor p = Tensor::from({3}, {0.5f, -1.0f, 2.0f}).set_requires_grad();
  Adam adam({p}, {.learning_rate = static_cast<float>(lr)});
  std::vector<double> theta{0.5, -1.0, 2.0}, m(3, 0.0), v(3, 0.0);
  for (size_t step = 0; step < kGrads.size(); ++step) {
    set_grad(p, kGrads[step]);
    adam.step();
    const double t = step + 1;
    const double alpha = lr * std::sqrt(1 - std::pow(b2, t)) / (1 - std::pow(b1, t));
    for (int k = 0; k < 3; ++k) {
      const double g = kGrads[step][k];
      m[k] += (g - m[k]) * (1 - b1);
      v[k] += (g * g - v[k]) * (1 - b2);
      theta[k] -= alpha * m[k] / (std::sqrt(v[k]) + eps);
      INFO("step " << t << " element " << k);
      REQUIRE(p.data()[k] == Approx(theta[k]).epsilon(1e-6));
    }
  }
  CHECK(adam.iterations() == 4);
}

TEST_CASE("Adam split between threads after threaded products gives the bytes of its single pass", "[optim]") {
  // Adam splits its pass when the step's products ran on several threads; the update is elementwise, so the
  // split must not change a bit. 50,890 parameters, the document model's count, in two tensors, the same
  // gradients in both runs; only whether a threaded product ran before each step differs.
  const auto run = [](bool after_threaded_product) {
    constexpr int64_t kFeatures = 28 * 28, kUnits = 64;  // the document model's first layer
    Tensor w = test::param({kFeatures, kUnits}, 1), b = test::param({650}, 2);
    Adam adam({w, b}, {.learning_rate = 0.01f});
    Generator gen(4);
    const Tensor x = Tensor::uniform({256, kFeatures}, -1, 1, gen), y = Tensor::uniform({kFeatures, kUnits}, -1, 1, gen);
    const int previous = omp_get_max_threads();
    omp_set_num_threads(2);
    for (int step = 0; step < 3; ++step) {
      w.zero_grad();
      b.zero_grad();
      sum(w * Tensor::uniform(w.shape(), -1, 1, gen)).backward();
      sum(b * Tensor::uniform(b.shape(), -1, 1, gen)).backward();
      const uint64_t before = internal::threaded_product_count();
      if (after_threaded_product) (void)matmul(x, y);  // 25.7 MFLOP: on both threads
      CHECK((internal::threaded_product_count() != before) == after_threaded_product);
      adam.step();
    }
    omp_set_num_threads(previous);
    return std::make_pair(w.to_vector(), b.to_vector());
  };
  CHECK(run(true) == run(false));
}

TEST_CASE("at t = 1 Keras's epsilon placement differs from PyTorch's", "[optim]") {
  // g = 1e-6: Keras divides by sqrt(v) + eps with v uncorrected (sqrt(0.001)·1e-6 ≈ 3.2e-8, comparable to
  // eps = 1e-7), so the first step is ~0.24·lr; PyTorch's lr·m̂/(sqrt(v̂) + 1e-8) would be ~0.99·lr.
  Tensor p = Tensor::from({1}, {0.0f}).set_requires_grad();
  Adam adam({p}, {.learning_rate = 1.0f});
  set_grad(p, {1e-6f});
  adam.step();
  const double keras = std::sqrt(0.001) / 0.1 * (0.1e-6) / (std::sqrt(0.001) * 1e-6 + 1e-7);
  const double pytorch = 1e-6 / (1e-6 + 1e-8);
  CHECK(-p.data()[0] == Approx(keras).epsilon(1e-5));
  CHECK(std::abs(-p.data()[0] - pytorch) > 0.5);
}

TEST_CASE("Adam with amsgrad uses the running maximum of v", "[optim]") {
  const double lr = 0.1, b1 = 0.9, b2 = 0.999, eps = 1e-7;
  Tensor p = Tensor::from({1}, {1.0f}).set_requires_grad();
  Adam adam({p}, {.learning_rate = 0.1f, .amsgrad = true});
  double theta = 1.0, m = 0, v = 0, v_hat = 0;
  for (int step = 1; step <= 4; ++step) {
    const double g = step == 1 ? 2.0 : 0.01;  // a large first gradient, then small ones: v falls, v_hat not
    set_grad(p, {static_cast<float>(g)});
    adam.step();
    m += (g - m) * (1 - b1);
    v += (g * g - v) * (1 - b2);
    v_hat = std::max(v_hat, v);
    theta -= lr * std::sqrt(1 - std::pow(b2, step)) / (1 - std::pow(b1, step)) * m / (std::sqrt(v_hat) + eps);
    REQUIRE(p.item() == Approx(theta).epsilon(1e-6));
  }
}

TEST_CASE("SGD plain, with momentum, and with Nesterov follow Keras", "[optim]") {
  for (const auto& [momentum, nesterov] : std::vector<std::pair<float, bool>>{{0.0f, false}, {0.9f, false}, {0.9f, true}}) {
    Tensor p = Tensor::from({3}, {0.5f, -1.0f, 2.0f}).set_requires_grad();
    SGD sgd({p}, {.learning_rate = 0.1f, .momentum = momentum, .nesterov = nesterov});
    std::vector<double> theta{0.5, -1.0, 2.0}, velocity(3, 0.0);
    for (const auto& g : kGrads) {
      set_grad(p, g);
      sgd.step();
      for (int k = 0; k < 3; ++k) {
        velocity[k] = momentum * velocity[k] - 0.1 * g[k];
        theta[k] += momentum == 0.0f ? -0.1 * g[k] : nesterov ? momentum * velocity[k] - 0.1 * g[k] : velocity[k];
        REQUIRE(p.data()[k] == Approx(theta[k]).epsilon(1e-6));
      }
    }
  }
}

TEST_CASE("optimizers check hyperparameters and parameters in the constructor", "[optim]") {
  Tensor p = Tensor::zeros({2}).set_requires_grad();
  CHECK_THROWS_WITH(Adam({p}, {.learning_rate = -1.0f}), "optimizer: learning rate must be a finite number >= 0, got -1");
  CHECK_THROWS_WITH(Adam({p}, {.beta_1 = 1.0f}), "Adam: beta_1 must be in [0, 1), got 1");
  CHECK_THROWS_WITH(Adam({p}, {.beta_2 = -0.1f}), "Adam: beta_2 must be in [0, 1), got -0.1");
  CHECK_THROWS_WITH(Adam({p}, {.epsilon = -1.0f}), "Adam: epsilon must be >= 0, got -1");
  CHECK_THROWS_WITH(SGD({p}, {.momentum = 2.0f}), "SGD: momentum must be in [0, 1], got 2");
  CHECK_THROWS_WITH(Adam({Tensor::zeros({2})}), Catch::Contains("must be a leaf tensor with requires_grad"));
  Adam adam({p});
  CHECK_THROWS_AS(adam.set_learning_rate(NAN), Error);
  adam.set_learning_rate(0.5f);
  CHECK(adam.learning_rate() == 0.5f);
}

TEST_CASE("parameters without a gradient are skipped", "[optim]") {
  Tensor a = Tensor::from({1}, {1.0f}).set_requires_grad(), b = Tensor::from({1}, {1.0f}).set_requires_grad();
  Adam adam({a, b});
  set_grad(a, {1.0f});
  adam.step();
  CHECK(a.item() != 1.0f);
  CHECK(b.item() == 1.0f);
  CHECK(adam.state()[3].second.item() == 0.0f);  // v/1 untouched
}

TEST_CASE("optimizer state round-trips: a restored optimizer continues identically", "[optim]") {
  for (bool amsgrad : {false, true}) {
    Tensor p = Tensor::from({3}, {0.5f, -1.0f, 2.0f}).set_requires_grad();
    Adam a({p}, {.amsgrad = amsgrad});
    for (int i = 0; i < 3; ++i) {
      set_grad(p, kGrads[i]);
      a.step();
    }
    std::map<std::string, Tensor> saved;
    for (const auto& [name, t] : a.state()) saved[name] = t.clone();
    Tensor q = p.clone().set_requires_grad();
    Adam b({q}, {.amsgrad = amsgrad});
    b.load_state(saved);
    b.set_iterations(a.iterations());
    set_grad(p, kGrads[3]);
    set_grad(q, kGrads[3]);
    a.step();
    b.step();
    CHECK(p.to_vector() == q.to_vector());
    saved.erase("m/0");
    CHECK_THROWS_WITH(b.load_state(saved), "optimizer state: 'm/0' [3] is missing");
  }
}

TEST_CASE("weight decay is Keras's decoupled form: θ −= θ·wd·lr, then the update (Adam, AdamW, SGD)", "[optim]") {
  const double lr = 1e-2, b1 = 0.9, b2 = 0.999, eps = 1e-7, wd = 0.05;
  for (const std::string kind : {"adam", "adamw", "sgd"}) {
    INFO(kind);
    Tensor p = Tensor::from({3}, {0.5f, -1.0f, 2.0f}).set_requires_grad();
    const NamedTensors named{{"w", p}};
    std::unique_ptr<Optimizer> opt;
    if (kind == "sgd") opt = std::make_unique<SGD>(named, SGDOptions{.learning_rate = float(lr), .momentum = 0.9f, .weight_decay = float(wd)});
    else if (kind == "adam") opt = std::make_unique<Adam>(named, AdamOptions{.learning_rate = float(lr), .weight_decay = float(wd)});
    else opt = std::make_unique<AdamW>(named, AdamOptions{.learning_rate = float(lr), .weight_decay = float(wd)});
    std::vector<double> theta{0.5, -1.0, 2.0}, m(3, 0.0), v(3, 0.0);
    for (size_t step = 0; step < kGrads.size(); ++step) {
      set_grad(p, kGrads[step]);
      opt->step();
      const double t = step + 1;
      const double alpha = lr * std::sqrt(1 - std::pow(b2, t)) / (1 - std::pow(b1, t));
      for (int k = 0; k < 3; ++k) {
        const double g = kGrads[step][k];
        theta[k] -= theta[k] * wd * lr;  // first the decay, from the weights before the update
        if (kind == "sgd") {
          m[k] = 0.9 * m[k] - lr * g;  // the velocity
          theta[k] += m[k];
        } else {
          m[k] += (g - m[k]) * (1 - b1);
          v[k] += (g * g - v[k]) * (1 - b2);
          theta[k] -= alpha * m[k] / (std::sqrt(v[k]) + eps);
        }
        INFO("step " << t << " element " << k);
        REQUIRE(p.data()[k] == Approx(theta[k]).epsilon(1e-6));
      }
    }
    CHECK(opt->config().at("optimizer.name") == kind);
    CHECK(opt->config().at("optimizer.weight_decay") == "0.05");
  }
  // AdamW's default is Keras's 0.004; Adam without decay writes no weight_decay key (the checkpoints before it).
  Tensor p = Tensor::zeros({2}).set_requires_grad();
  CHECK(AdamW({{"w", p}}).weight_decay() == 0.004f);
  CHECK(Adam({p}).config().count("optimizer.weight_decay") == 0);
  CHECK_THROWS_WITH(Adam({p}, {.weight_decay = -1.0f}), "optimizer: weight decay must be a finite number >= 0, got -1");
  CHECK_THROWS_WITH(SGD({p}, {.weight_decay = NAN}), Catch::Contains("weight decay must be a finite number >= 0"));
}
