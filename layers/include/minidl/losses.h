// Losses and metrics with Keras semantics (docs/keras.md §5, §6).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "minidl/tensor.h"

namespace minidl {

class Module;

/// The losses a model trains with (Keras's names). Classification: categorical cross-entropy on a softmax over
/// the classes, binary cross-entropy on one sigmoid output (labels 0 and 1). Regression, on float targets:
/// mean squared error, mean absolute error, Huber (delta 1).
enum class Loss { categorical_crossentropy, binary_crossentropy, mse, mae, huber };
std::string to_string(Loss loss);
/// "mse", "mae", "huber", "categorical_crossentropy", "binary_crossentropy" (Keras's long names
/// mean_squared_error and mean_absolute_error too); throws naming the choices otherwise.
Loss parse_loss(const std::string& name);
/// The loss names, in the order parse_loss lists them.
std::vector<std::string> loss_names();
/// True for the losses on float targets (mse, mae, huber).
bool is_regression(Loss loss);
/// What a model's last layer implies (Keras has no default; this is minidl's): softmax →
/// categorical_crossentropy, sigmoid → binary_crossentropy, any other last layer of a Sequential → mse. A module
/// whose last layer cannot be seen (a custom Module) gets mse for float targets, else categorical_crossentropy.
Loss default_loss(const Module& model, bool float_targets = false);
/// The loss to minimise: mean over the batch of `loss` between targets and predictions of the same shape.
Tensor compute_loss(Loss loss, const Tensor& y_true, const Tensor& y_pred);

/// Keras's label_smoothing, applied to targets before the loss: categorical cross-entropy's y·(1 − s) + s/K over the
/// K columns, binary cross-entropy's y·(1 − s) + s/2. s must be in [0, 1]; the regression losses take none (s > 0
/// throws). s = 0 returns y itself.
Tensor smooth_labels(Loss loss, const Tensor& y, float smoothing);
/// Throws unless `loss` can take label smoothing `smoothing` (in [0, 1]; 0 for the regression losses).
void check_label_smoothing(Loss loss, float smoothing);

/// Keras mean_squared_error: mean of (y − ŷ)².
Tensor mean_squared_error(const Tensor& y_true, const Tensor& y_pred);
/// Keras mean_absolute_error: mean of |y − ŷ|.
Tensor mean_absolute_error(const Tensor& y_true, const Tensor& y_pred);
/// Keras huber: mean of ½e² where |e| <= delta, else delta·|e| − ½delta² (e = y − ŷ).
Tensor huber(const Tensor& y_true, const Tensor& y_pred, float delta = 1.0f);
/// Keras binary_crossentropy, mean over every element. When y_pred is the output of sigmoid() the loss is
/// computed from its logits (sigmoid_cross_entropy), as Keras's fit does; otherwise p is clipped to
/// [1e-7, 1 − 1e-7] and loss = −(y log(p + 1e-7) + (1 − y) log(1 − p + 1e-7)).
Tensor binary_crossentropy(const Tensor& y_true, const Tensor& y_pred);
/// The probability formula alone, never taking the logits path.
Tensor binary_crossentropy_from_probabilities(const Tensor& y_true, const Tensor& y_pred);

/// Keras categorical_crossentropy on probabilities, mean over samples. When y_pred is the output of softmax()
/// (e.g. Dense(..., Activation::softmax)), the loss is computed from its logits instead — stable, unclipped,
/// gradient (softmax − y)/N — exactly as Keras's fit does. Otherwise: p = y_pred / Σp, clipped to
/// [1e-7, 1 − 1e-7], loss = −Σ y log p.
Tensor categorical_crossentropy(const Tensor& y_true, const Tensor& y_pred);
/// The same with integer labels.
Tensor sparse_categorical_crossentropy(std::span<const int32_t> labels, const Tensor& y_pred);
/// The probability formula alone, never taking the logits path (for comparison and tests).
Tensor categorical_crossentropy_from_probabilities(const Tensor& y_true, const Tensor& y_pred);

/// Fraction of rows whose predicted class equals the label: the argmax (ties: lowest index), or for a single
/// column (a sigmoid output) class 1 when the probability is above 0.5 (Keras's binary_accuracy).
double accuracy(std::span<const int32_t> labels, const Tensor& y_pred);
/// Number of such rows.
int64_t count_correct(std::span<const int32_t> labels, const Tensor& y_pred);

/// Σ |y − ŷ| over every element (in double): what the Trainer sums for an epoch's MAE.
double absolute_error_sum(const Tensor& y_true, const Tensor& y_pred);

/// The area under the ROC curve of scores for labels 0 and 1: the probability that a random positive scores
/// above a random negative, ties counting one half (exact, where Keras's AUC interpolates over 200 thresholds).
/// NaN when one class is absent.
double roc_auc(std::span<const int32_t> labels, std::span<const float> scores);

/// Per-column running mean and sum of squared deviations (Welford, in double) over the rows added: what R² and
/// Keras's Normalization.adapt read, batch by batch, with no cancellation for columns far from zero.
struct ColumnMoments {
  std::vector<double> mean, m2;
  int64_t count = 0;  ///< rows added
  /// Adds x [..., columns]: every row of its last axis.
  void add(const Tensor& x);
};

/// Regression metrics of predictions against targets [N, K], accumulated batch by batch.
struct RegressionMetrics {
  /// Adds a batch: targets and predictions of the same shape.
  void add(const Tensor& y_true, const Tensor& y_pred);
  double mae() const;   ///< mean |y − ŷ| over every element
  double rmse() const;  ///< sqrt(mean (y − ŷ)²)
  /// 1 − SS_res / SS_tot per output, averaged over the outputs (Keras's R2Score, uniform_average); NaN for an
  /// output whose targets are all equal.
  double r2() const;
  int64_t samples = 0;
  std::vector<double> abs_error, squared_error;  ///< per output: sums of |e| and e²
  ColumnMoments targets;                         ///< per output: the targets' mean and sum of squared deviations
};

}  // namespace minidl
