// Tests of the losses and metrics: Keras's probability cross-entropy (renormalise, clip), the fused
// from-logits paths softmax and sigmoid outputs take, the sparse forms, accuracy's tie rule, the regression
// losses and metrics (MAE, RMSE, R²), ROC AUC, and which loss a model implies.
#include <cmath>

#include "helpers.h"
#include "minidl/nn.h"

using namespace minidl;
using minidl::test::param;
using minidl::test::require_grad_ok;
using minidl::test::require_values;
using Inputs = std::vector<Tensor>;

TEST_CASE("categorical_crossentropy on probabilities renormalises and clips", "[loss]") {
  const Tensor y = Tensor::from({2, 3}, {0, 1, 0, 1, 0, 0});
  // Row 0 sums to 2: renormalised p = 0.25 → −log 0.25. Row 1 predicts 0 for the true class: clipped to 1e-7.
  const Tensor p = Tensor::from({2, 3}, {1.0f, 0.5f, 0.5f, 0.0f, 0.5f, 0.5f});
  const double expected = (-std::log(0.25) - std::log(1e-7)) / 2;
  CHECK(categorical_crossentropy(y, p).item() == Approx(expected).epsilon(1e-6));
  CHECK(categorical_crossentropy_from_probabilities(y, p).item() == Approx(expected).epsilon(1e-6));
  const std::vector<int32_t> labels{1, 0};
  CHECK(sparse_categorical_crossentropy(labels, p).item() == Approx(expected).epsilon(1e-6));
  CHECK_THROWS_WITH(categorical_crossentropy(Tensor::zeros({2, 4}), p),
                    "categorical_crossentropy: targets [2,4] do not match predictions [2,3]");
}

TEST_CASE("softmax cross-entropy from logits equals cross-entropy on softmax probabilities", "[loss]") {
  const Tensor z = param({5, 4}, 1, -2.0f, 2.0f);
  const std::vector<int32_t> labels{0, 3, 1, 1, 2};
  const Tensor y = one_hot(labels, 4);
  const float fused = softmax_cross_entropy(z, y).item();
  const float sparse = sparse_softmax_cross_entropy(z, labels).item();
  const float via_probabilities = categorical_crossentropy_from_probabilities(y, softmax(z.detach())).item();
  CHECK(fused == Approx(via_probabilities).epsilon(1e-6));
  CHECK(sparse == Approx(via_probabilities).epsilon(1e-6));
  // A softmax output takes the logits path: same value, and the gradient is (softmax − y)/N exactly.
  const Tensor loss = categorical_crossentropy(y, softmax(z));
  CHECK(loss.item() == Approx(fused).epsilon(1e-6));
  loss.backward();
  const Tensor p = softmax(z.detach());
  for (int64_t i = 0; i < z.numel(); ++i) REQUIRE(z.grad().data()[i] == Approx((p.data()[i] - y.data()[i]) / 5).margin(1e-7));
}

TEST_CASE("the logits path ignores the clipping that a saturated softmax would hit", "[loss]") {
  const Tensor z = Tensor::from({1, 2}, {0.0f, 40.0f});
  const Tensor y = Tensor::from({1, 2}, {1.0f, 0.0f});
  CHECK(categorical_crossentropy(y, softmax(z)).item() == Approx(40.0f).epsilon(1e-6));
  CHECK(categorical_crossentropy_from_probabilities(y, softmax(z)).item() == Approx(-std::log(1e-7)).epsilon(1e-5));
}

TEST_CASE("grad of the cross-entropy losses", "[loss]") {
  const Tensor z = param({4, 3}, 1, -2.0f, 2.0f);
  const std::vector<int32_t> labels{2, 0, 1, 1};
  const Tensor y = one_hot(labels, 3);
  Tensor soft_targets = param({4, 3}, 2, 0.1f, 1.0f);
  require_grad_ok([&](const Inputs& p) { return softmax_cross_entropy(p[0], y); }, {z});
  require_grad_ok([&](const Inputs& p) { return softmax_cross_entropy(p[0], p[1]); }, {z, soft_targets});
  require_grad_ok([&](const Inputs& p) { return sparse_softmax_cross_entropy(p[0], labels); }, {z});
  require_grad_ok([&](const Inputs& p) { return categorical_crossentropy(y, softmax(p[0])); }, {z});
  const Tensor probs = param({4, 3}, 3, 0.2f, 1.0f);
  require_grad_ok([&](const Inputs& p) { return categorical_crossentropy_from_probabilities(y, p[0]); }, {probs});
  require_grad_ok([&](const Inputs& p) { return sparse_categorical_crossentropy(labels, p[0]); }, {probs});
}

TEST_CASE("accuracy takes the argmax, ties going to the lowest index", "[loss]") {
  const Tensor p = Tensor::from({4, 3}, {0.1f, 0.7f, 0.2f, 0.5f, 0.5f, 0.0f, 0.3f, 0.3f, 0.3f, 0.0f, 0.2f, 0.8f});
  const std::vector<int32_t> labels{1, 1, 0, 2};
  CHECK(count_correct(labels, p) == 3);  // row 1 ties between 0 and 1 → 0, wrong
  CHECK(accuracy(labels, p) == Approx(0.75));
  CHECK_THROWS_WITH(accuracy(std::vector<int32_t>{1}, p),
                    "accuracy: 1 targets for predictions of shape [4,3] (need one per row)");
}

TEST_CASE("the regression losses: Keras's mse, mae and huber, with their gradients", "[loss]") {
  const Tensor y = Tensor::from({2, 2}, {1.0f, -2.0f, 0.5f, 3.0f});
  const Tensor p = Tensor::from({2, 2}, {1.5f, -2.0f, 3.0f, 2.9f});
  // Errors 0.5, 0, 2.5, −0.1.
  CHECK(mean_squared_error(y, p).item() == Approx((0.25 + 0 + 6.25 + 0.01) / 4).epsilon(1e-6));
  CHECK(mean_absolute_error(y, p).item() == Approx((0.5 + 0 + 2.5 + 0.1) / 4).epsilon(1e-6));
  // Huber, delta 1: ½e² inside, |e| − ½ beyond.
  CHECK(huber(y, p).item() == Approx((0.125 + 0 + (2.5 - 0.5) + 0.005) / 4).epsilon(1e-6));
  CHECK(huber(y, p, 3.0f).item() == Approx((0.125 + 0 + 3.125 + 0.005) / 4).epsilon(1e-6));
  CHECK(compute_loss(Loss::mse, y, p).item() == mean_squared_error(y, p).item());
  CHECK_THROWS_WITH(mean_squared_error(Tensor::zeros({2, 1}), p),
                    "mean_squared_error: targets [2,1] do not match predictions [2,2]");
  const Tensor q = param({3, 2}, 7, -2.0f, 2.0f);
  const Tensor t = Tensor::from({3, 2}, {0.3f, -1.2f, 1.7f, 0.05f, -0.4f, 2.5f});
  require_grad_ok([&](const Inputs& v) { return mean_squared_error(t, v[0]); }, {q});
  require_grad_ok([&](const Inputs& v) { return mean_absolute_error(t, v[0]); }, {q});
  require_grad_ok([&](const Inputs& v) { return huber(t, v[0]); }, {q});
}

TEST_CASE("binary cross-entropy: Keras's probability formula, and the logits path a sigmoid output takes", "[loss]") {
  const Tensor y = Tensor::from({3, 1}, {1.0f, 0.0f, 1.0f});
  const Tensor p = Tensor::from({3, 1}, {0.9f, 0.2f, 0.0f});
  // −(y log(p + ε) + (1 − y) log(1 − p + ε)), p clipped to [ε, 1 − ε], ε = 1e-7.
  const double eps = 1e-7;
  const double expected = -(std::log(0.9 + eps) + std::log(0.8 + eps) + std::log(eps + eps)) / 3;
  CHECK(binary_crossentropy(y, p).item() == Approx(expected).epsilon(1e-5));
  CHECK(binary_crossentropy_from_probabilities(y, p).item() == Approx(expected).epsilon(1e-5));
  // From logits: max(z, 0) − z·y + log(1 + e^−|z|), stable at any z; its gradient is (σ(z) − y)/N exactly.
  const Tensor z = param({4, 1}, 3, -4.0f, 4.0f);
  const Tensor t = Tensor::from({4, 1}, {1.0f, 0.0f, 0.0f, 1.0f});
  const Tensor s = sigmoid(z.detach());
  double by_hand = 0.0;
  for (int i = 0; i < 4; ++i) {
    const double pi = s.data()[i], ti = t.data()[i];
    by_hand -= ti * std::log(pi) + (1 - ti) * std::log(1 - pi);
  }
  const Tensor loss = binary_crossentropy(t, sigmoid(z));
  CHECK(loss.item() == Approx(by_hand / 4).epsilon(1e-5));
  loss.backward();
  for (int i = 0; i < 4; ++i) CHECK(z.grad().data()[i] == Approx((s.data()[i] - t.data()[i]) / 4).margin(1e-7));
  // Saturated: the logits path stays exact where the clipped formula tops out at −log(1e-7).
  const Tensor far = Tensor::from({1, 1}, {-40.0f});
  CHECK(binary_crossentropy(Tensor::ones({1, 1}), sigmoid(far)).item() == Approx(40.0f).epsilon(1e-6));
  require_grad_ok([&](const Inputs& v) { return binary_crossentropy(t, sigmoid(v[0])); }, {z});
  require_grad_ok([&](const Inputs& v) { return binary_crossentropy_from_probabilities(t, v[0]); },
                  {param({4, 1}, 4, 0.1f, 0.9f)});
}

TEST_CASE("sigmoid is exact and finite for large inputs of either sign", "[loss]") {
  const Tensor s = sigmoid(Tensor::from({5}, {-50.0f, -1.0f, 0.0f, 2.0f, 100.0f}));
  CHECK(s.data()[0] == Approx(std::exp(-50.0)).epsilon(1e-5));
  CHECK(s.data()[1] == Approx(1 / (1 + std::exp(1.0))).epsilon(1e-6));
  CHECK(s.data()[2] == 0.5f);
  CHECK(s.data()[3] == Approx(1 / (1 + std::exp(-2.0))).epsilon(1e-6));
  CHECK(s.data()[4] == 1.0f);
}

TEST_CASE("which loss a model implies, and the loss names", "[loss]") {
  Sequential classifier, binary, regression, empty;
  classifier.add(std::make_shared<Dense>(3, 4, Activation::softmax));
  binary.add(std::make_shared<Dense>(3, 1));
  binary.add(std::make_shared<Sigmoid>());
  regression.add(std::make_shared<Dense>(3, 2));
  regression.add(std::make_shared<ReLU>());
  CHECK(default_loss(classifier) == Loss::categorical_crossentropy);
  CHECK(default_loss(binary) == Loss::binary_crossentropy);
  CHECK(default_loss(regression) == Loss::mse);
  // A module minidl cannot see into: the data decides.
  struct Custom : Module {
    Tensor forward(const Tensor& x) override { return x; }
    std::string type_name() const override { return "Custom"; }
  } custom;
  CHECK(default_loss(custom) == Loss::categorical_crossentropy);
  CHECK(default_loss(custom, true) == Loss::mse);
  for (const std::string& name : loss_names()) CHECK(to_string(parse_loss(name)) == name);
  CHECK(parse_loss("mean_squared_error") == Loss::mse);
  CHECK(parse_loss("mean_absolute_error") == Loss::mae);
  CHECK(is_regression(Loss::huber));
  CHECK_FALSE(is_regression(Loss::binary_crossentropy));
  CHECK_THROWS_WITH(parse_loss("l2"),
                    "unknown loss 'l2': choose one of categorical_crossentropy, binary_crossentropy, mse, mae, huber");
}

TEST_CASE("binary accuracy takes class 1 above 0.5, and ROC AUC counts ties as one half", "[loss]") {
  const Tensor p = Tensor::from({4, 1}, {0.7f, 0.5f, 0.2f, 0.51f});
  CHECK(count_correct(std::vector<int32_t>{1, 0, 0, 0}, p) == 3);  // 0.5 is class 0, as Keras's threshold
  // Positives score 0.8 and 0.4, negatives 0.4 and 0.1: pairs (0.8>0.4) (0.8>0.1) (0.4=0.4: ½) (0.4>0.1) → 3.5/4.
  const std::vector<int32_t> labels{1, 1, 0, 0};
  const std::vector<float> scores{0.8f, 0.4f, 0.4f, 0.1f};
  CHECK(roc_auc(labels, scores) == Approx(0.875));
  CHECK(roc_auc(std::vector<int32_t>{0, 1}, std::vector<float>{0.9f, 0.1f}) == 0.0);
  CHECK(std::isnan(roc_auc(std::vector<int32_t>{1, 1}, std::vector<float>{0.9f, 0.1f})));
}

TEST_CASE("regression metrics: MAE, RMSE and R² over batches, R² averaged over outputs", "[loss]") {
  RegressionMetrics m;
  // Output 0: targets 1, 2, 3, 4 predicted 1.5, 2, 2, 4 → errors 0.5, 0, −1, 0; SS_tot = 5, SS_res = 1.25.
  // Output 1: targets 1e6 + {0, 2, 4, 6} predicted exactly → R² 1 (far from zero: no cancellation).
  m.add(Tensor::from({2, 2}, {1, 1e6f, 2, 1e6f + 2}), Tensor::from({2, 2}, {1.5f, 1e6f, 2, 1e6f + 2}));
  m.add(Tensor::from({2, 2}, {3, 1e6f + 4, 4, 1e6f + 6}), Tensor::from({2, 2}, {2, 1e6f + 4, 4, 1e6f + 6}));
  CHECK(m.samples == 4);
  CHECK(m.mae() == Approx(1.5 / 8));
  CHECK(m.rmse() == Approx(std::sqrt(1.25 / 8)));
  CHECK(m.r2() == Approx(((1 - 1.25 / 5) + 1.0) / 2));
  RegressionMetrics constant;
  constant.add(Tensor::from({2, 1}, {3, 3}), Tensor::from({2, 1}, {3, 4}));
  CHECK(std::isnan(constant.r2()));
}
