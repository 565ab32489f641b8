// Cross-entropy losses (probabilities, or logits when the prediction came from softmax) and accuracy.
#include "minidl/losses.h"

#include "minidl/ops.h"

namespace minidl {
namespace {
constexpr float kClip = 1e-7f;  // Keras's backend epsilon

void check_prediction(const char* op, const Tensor& y_pred, int64_t rows) {
  if (y_pred.dim() != 2) fail(op, ": expects predictions of shape [N,C], got ", y_pred.shape().str());
  if (y_pred.size(0) != rows)
    fail(op, ": ", rows, " targets for predictions of shape ", y_pred.shape().str(), " (need one per row)");
}

// Keras: p = y_pred / Σ y_pred, clipped to [1e-7, 1 − 1e-7].
Tensor normalised_clipped(const Tensor& y_pred) { return clip(y_pred / sum(y_pred, {-1}, true), kClip, 1.0f - kClip); }
}  // namespace

Tensor categorical_crossentropy_from_probabilities(const Tensor& y_true, const Tensor& y_pred) {
  check_prediction("categorical_crossentropy", y_pred, y_true.dim() ? y_true.size(0) : 0);
  if (!(y_true.shape() == y_pred.shape()))
    fail("categorical_crossentropy: targets ", y_true.shape().str(), " do not match predictions ",
         y_pred.shape().str());
  return mean(-sum(y_true * log(normalised_clipped(y_pred)), {-1}));
}

Tensor categorical_crossentropy(const Tensor& y_true, const Tensor& y_pred) {
  if (const Tensor logits = softmax_logits_of(y_pred); logits.defined() && logits.dim() == 2)
    return softmax_cross_entropy(logits, y_true);
  return categorical_crossentropy_from_probabilities(y_true, y_pred);
}

Tensor sparse_categorical_crossentropy(std::span<const int32_t> labels, const Tensor& y_pred) {
  check_prediction("sparse_categorical_crossentropy", y_pred, static_cast<int64_t>(labels.size()));
  if (const Tensor logits = softmax_logits_of(y_pred); logits.defined())
    return sparse_softmax_cross_entropy(logits, labels);
  return -mean(gather(log(normalised_clipped(y_pred)), labels));
}

int64_t count_correct(std::span<const int32_t> labels, const Tensor& y_pred) {
  check_prediction("accuracy", y_pred, static_cast<int64_t>(labels.size()));
  const int64_t rows = y_pred.size(0), cols = y_pred.size(1);
  int64_t correct = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = y_pred.data() + r * cols;
    int64_t best = 0;
    for (int64_t c = 1; c < cols; ++c)
      if (row[c] > row[best]) best = c;  // strict: ties keep the lowest index
    correct += best == labels[r];
  }
  return correct;
}

double accuracy(std::span<const int32_t> labels, const Tensor& y_pred) {
  const int64_t rows = static_cast<int64_t>(labels.size());
  return rows ? static_cast<double>(count_correct(labels, y_pred)) / static_cast<double>(rows) : 0.0;
}

}  // namespace minidl
