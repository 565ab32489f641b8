// Tests of the losses and metrics: Keras's probability cross-entropy (renormalise, clip), the fused
// from-logits path a softmax output takes, the sparse forms, accuracy's tie rule.
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
