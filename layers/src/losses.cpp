// Losses (cross-entropies on probabilities, or on logits when the prediction came from softmax or sigmoid; the
// regression losses), which loss a model implies, and the metrics: accuracy, ROC AUC, MAE, RMSE, R².
#include "minidl/losses.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "minidl/internal/text.h"
#include "minidl/layers.h"
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

namespace {
const std::vector<std::pair<Loss, std::string>>& loss_table() {
  static const std::vector<std::pair<Loss, std::string>> table = {{Loss::categorical_crossentropy, "categorical_crossentropy"},
                                                                  {Loss::binary_crossentropy, "binary_crossentropy"},
                                                                  {Loss::mse, "mse"},
                                                                  {Loss::mae, "mae"},
                                                                  {Loss::huber, "huber"}};
  return table;
}

void check_same_shape(const char* op, const Tensor& y_true, const Tensor& y_pred) {
  if (!(y_true.shape() == y_pred.shape()))
    fail(op, ": targets ", y_true.shape().str(), " do not match predictions ", y_pred.shape().str());
}
}  // namespace

std::string to_string(Loss loss) {
  for (const auto& [l, name] : loss_table())
    if (l == loss) return name;
  fail("to_string: unknown loss ", static_cast<int>(loss));
}

std::vector<std::string> loss_names() {
  std::vector<std::string> names;
  for (const auto& [l, name] : loss_table()) names.push_back(name);
  return names;
}

Loss parse_loss(const std::string& name) {
  if (name == "mean_squared_error") return Loss::mse;
  if (name == "mean_absolute_error") return Loss::mae;
  for (const auto& [l, n] : loss_table())
    if (n == name) return l;
  fail("unknown loss '", name, "': choose one of ", internal::join(loss_names()));
}

bool is_regression(Loss loss) { return loss == Loss::mse || loss == Loss::mae || loss == Loss::huber; }

Loss default_loss(const Module& model, bool float_targets) {
  const Module* last = &model;
  bool seen = false;  // the last layer closes a Sequential: its kind decides
  while (const auto* sequential = dynamic_cast<const Sequential*>(last)) {
    if (sequential->children().empty()) break;
    last = sequential->children().back().get();
    seen = true;
  }
  const auto* dense = dynamic_cast<const Dense*>(last);
  if (dynamic_cast<const Softmax*>(last) || (dense && dense->activation() == Activation::softmax))
    return Loss::categorical_crossentropy;
  if (dynamic_cast<const Sigmoid*>(last)) return Loss::binary_crossentropy;
  if (seen || dense) return Loss::mse;
  return float_targets ? Loss::mse : Loss::categorical_crossentropy;
}

Tensor compute_loss(Loss loss, const Tensor& y_true, const Tensor& y_pred) {
  switch (loss) {
    case Loss::categorical_crossentropy: return categorical_crossentropy(y_true, y_pred);
    case Loss::binary_crossentropy: return binary_crossentropy(y_true, y_pred);
    case Loss::mse: return mean_squared_error(y_true, y_pred);
    case Loss::mae: return mean_absolute_error(y_true, y_pred);
    case Loss::huber: return huber(y_true, y_pred);
  }
  fail("compute_loss: unknown loss ", static_cast<int>(loss));
}

void check_label_smoothing(Loss loss, float smoothing) {
  if (!(smoothing >= 0.0f && smoothing <= 1.0f)) fail("label smoothing must be in [0, 1], got ", smoothing);
  if (smoothing > 0.0f && is_regression(loss))
    fail("label smoothing applies to categorical and binary cross-entropy, not ", to_string(loss),
         " (its targets are values, not classes)");
}

Tensor smooth_labels(Loss loss, const Tensor& y, float smoothing) {
  check_label_smoothing(loss, smoothing);
  if (smoothing == 0.0f) return y;
  if (y.dim() != 2) fail("smooth_labels: expects targets [N, K], got ", y.shape().str());
  // Keras: categorical over K columns y·(1 − s) + s/K; binary (one column of probabilities) y·(1 − s) + s/2.
  const float spread = smoothing / (loss == Loss::binary_crossentropy ? 2.0f : static_cast<float>(y.size(1)));
  Tensor out = Tensor::empty(y.shape());
  const float* in = y.data();
  float* o = out.data();
  for (int64_t i = 0; i < y.numel(); ++i) o[i] = in[i] * (1.0f - smoothing) + spread;
  return out;
}

Tensor mean_squared_error(const Tensor& y_true, const Tensor& y_pred) {
  check_same_shape("mean_squared_error", y_true, y_pred);
  return mean(square(y_pred - y_true));
}

Tensor mean_absolute_error(const Tensor& y_true, const Tensor& y_pred) {
  check_same_shape("mean_absolute_error", y_true, y_pred);
  return mean(abs(y_pred - y_true));
}

Tensor huber(const Tensor& y_true, const Tensor& y_pred, float delta) {
  check_same_shape("huber", y_true, y_pred);
  if (!(delta > 0.0f)) fail("huber: delta must be > 0, got ", delta);
  // With a = |e| and q = min(a, delta): ½q² + delta·(a − q), which is ½a² up to delta and delta·a − ½delta² beyond.
  const Tensor a = abs(y_pred - y_true);
  const Tensor q = clip(a, 0.0f, delta);
  return mean(0.5f * square(q) + delta * (a - q));
}

Tensor binary_crossentropy_from_probabilities(const Tensor& y_true, const Tensor& y_pred) {
  check_same_shape("binary_crossentropy", y_true, y_pred);
  const Tensor p = clip(y_pred, kClip, 1.0f - kClip);
  return -mean(y_true * log(p + kClip) + (1.0f - y_true) * log(1.0f - p + kClip));
}

Tensor binary_crossentropy(const Tensor& y_true, const Tensor& y_pred) {
  check_same_shape("binary_crossentropy", y_true, y_pred);
  if (const Tensor logits = sigmoid_logits_of(y_pred); logits.defined()) return sigmoid_cross_entropy(logits, y_true);
  return binary_crossentropy_from_probabilities(y_true, y_pred);
}

double absolute_error_sum(const Tensor& y_true, const Tensor& y_pred) {
  check_same_shape("absolute_error_sum", y_true, y_pred);
  double sum = 0.0;
  for (int64_t i = 0; i < y_true.numel(); ++i) sum += std::fabs(static_cast<double>(y_pred.data()[i]) - y_true.data()[i]);
  return sum;
}

double roc_auc(std::span<const int32_t> labels, std::span<const float> scores) {
  if (labels.size() != scores.size()) fail("roc_auc: ", labels.size(), " labels for ", scores.size(), " scores");
  // Mann–Whitney: the positives' mean rank among all scores (tied scores share their mean rank).
  std::vector<size_t> order(scores.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] < scores[b]; });
  double positive_ranks = 0.0;
  int64_t positives = 0;
  for (size_t i = 0; i < order.size();) {
    size_t j = i;
    while (j < order.size() && scores[order[j]] == scores[order[i]]) ++j;
    const double rank = 0.5 * static_cast<double>(i + 1 + j);  // the mean of ranks i+1 … j
    for (size_t k = i; k < j; ++k)
      if (labels[order[k]] == 1) positive_ranks += rank, ++positives;
    i = j;
  }
  const int64_t negatives = static_cast<int64_t>(scores.size()) - positives;
  if (positives == 0 || negatives == 0) return NAN;
  const double p = static_cast<double>(positives), n = static_cast<double>(negatives);
  return (positive_ranks - p * (p + 1.0) / 2.0) / (p * n);
}

void ColumnMoments::add(const Tensor& x) {
  if (x.dim() == 0) fail("column moments: cannot add a scalar");
  const int64_t c = x.size(-1), rows = c ? x.numel() / c : 0;
  if (mean.empty()) mean.assign(static_cast<size_t>(c), 0.0), m2 = mean;
  if (static_cast<int64_t>(mean.size()) != c) fail("column moments: ", c, " columns after batches of ", mean.size());
  const float* p = x.data();
  for (int64_t r = 0; r < rows; ++r) {
    ++count;
    for (int64_t j = 0; j < c; ++j) {
      const double v = p[r * c + j], d = v - mean[j];
      mean[j] += d / static_cast<double>(count);
      m2[j] += d * (v - mean[j]);
    }
  }
}

void RegressionMetrics::add(const Tensor& y_true, const Tensor& y_pred) {
  check_same_shape("regression metrics", y_true, y_pred);
  if (y_true.dim() != 2) fail("regression metrics: expects targets [N, K], got ", y_true.shape().str());
  const int64_t rows = y_true.size(0), outputs = y_true.size(1);
  if (abs_error.empty()) abs_error.assign(outputs, 0.0), squared_error = abs_error;
  if (static_cast<int64_t>(abs_error.size()) != outputs)
    fail("regression metrics: ", outputs, " outputs after batches of ", abs_error.size());
  const float *y = y_true.data(), *p = y_pred.data();
  for (int64_t i = 0; i < rows * outputs; ++i) {
    const double e = static_cast<double>(p[i]) - y[i];
    abs_error[i % outputs] += std::fabs(e);
    squared_error[i % outputs] += e * e;
  }
  targets.add(y_true);
  samples += rows;
}

double RegressionMetrics::mae() const {
  const double n = static_cast<double>(samples) * static_cast<double>(abs_error.size());
  return n ? std::accumulate(abs_error.begin(), abs_error.end(), 0.0) / n : NAN;
}

double RegressionMetrics::rmse() const {
  const double n = static_cast<double>(samples) * static_cast<double>(squared_error.size());
  return n ? std::sqrt(std::accumulate(squared_error.begin(), squared_error.end(), 0.0) / n) : NAN;
}

double RegressionMetrics::r2() const {
  if (samples == 0) return NAN;
  double total = 0.0;
  for (size_t k = 0; k < abs_error.size(); ++k) {
    if (!(targets.m2[k] > 0.0)) return NAN;  // m2 is the total sum of squares about the mean
    total += 1.0 - squared_error[k] / targets.m2[k];
  }
  return total / static_cast<double>(abs_error.size());
}

int64_t count_correct(std::span<const int32_t> labels, const Tensor& y_pred) {
  check_prediction("accuracy", y_pred, static_cast<int64_t>(labels.size()));
  const int64_t rows = y_pred.size(0), cols = y_pred.size(1);
  int64_t correct = 0;
  if (cols == 1) {  // one sigmoid output: class 1 above 0.5
    for (int64_t r = 0; r < rows; ++r) correct += (y_pred.data()[r] > 0.5f ? 1 : 0) == labels[r];
    return correct;
  }
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
