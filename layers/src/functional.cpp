// tf.nn.moments and tf.nn.batch_normalization, composed from core ops (no hand-written backward), and the
// MomentsNormalization layer built from them.
#include "minidl/functional.h"

#include <numeric>

#include "minidl/distributed.h"
#include "minidl/layers.h"
#include "minidl/ops.h"

namespace minidl {

std::pair<Tensor, Tensor> moments(const Tensor& x, const std::vector<int>& axes, bool keepdims) {
  const Tensor mean_kept = mean(x, axes, true);
  // As TensorFlow: the variance sees the mean with its gradient stopped; Σ(x − μ) = 0 makes that exact.
  const Tensor variance_kept = mean(square(x - mean_kept.detach()), axes, true);
  if (keepdims) return {mean_kept, variance_kept};
  Shape reduced;  // x's shape without the reduced axes (mean() has already validated them)
  for (int axis = 0; axis < x.dim(); ++axis) {
    bool is_reduced = axes.empty();
    for (int a : axes) is_reduced = is_reduced || (a < 0 ? a + x.dim() : a) == axis;
    if (!is_reduced) reduced.push_back(x.size(axis));
  }
  return {reshape(mean_kept, reduced), reshape(variance_kept, reduced)};
}

Tensor batch_normalization(const Tensor& x, const Tensor& mean, const Tensor& variance, const Tensor& offset,
                           const Tensor& scale, float epsilon) {
  Tensor inv = rsqrt(variance + epsilon);
  if (scale.defined()) inv = inv * scale;
  const Tensor shift = offset.defined() ? offset - mean * inv : -(mean * inv);
  return x * inv + shift;
}

Tensor dropout(const Tensor& x, float rate, Generator& gen) {
  if (!(rate >= 0.0f && rate < 1.0f)) fail("dropout: rate must be in [0, 1), got ", rate);
  Tensor mask = Tensor::empty(x.shape());
  const float keep_scale = 1.0f / (1.0f - rate);
  for (float& m : mask.values()) m = gen.uniform() >= rate ? keep_scale : 0.0f;  // keep when u >= rate
  return x * mask;
}

MomentsNormalization::MomentsNormalization(int64_t features, float epsilon, std::string name)
    : Normalization("MomentsNormalization", features, epsilon, std::move(name)) {
  gamma_ = register_parameter("gamma", Tensor::ones({features}));
  beta_ = register_parameter("beta", Tensor::zeros({features}));
}

int64_t MomentsNormalization::min_training_batch(const Shape& input) const {
  return min_batch_for_statistics(input);  // an image's positions suffice, one vector per sample does not
}

std::string MomentsNormalization::export_onnx(OnnxGraph&, const std::string&, const Shape&) const {
  fail("layer '", name(), "' normalises every batch with that batch's own statistics (manual mode): it has no "
       "moving statistics, so no inference form to export — a prediction would depend on the other samples in its "
       "batch. Train with --norm running or batchwise to export.");
}

Tensor MomentsNormalization::forward(const Tensor& x) {
  output_shape(x.shape());
  if (x.numel() / features_ < 2)
    fail("MomentsNormalization '", name(), "': normalising with batch statistics needs at least 2 values per channel, got ",
         x.numel() / features_, " (one value normalises to 0 and the output is just beta) — use a larger (evaluation) batch");
  // tf.nn.moments over every axis but the channels: [0] for [N, C], [0, 1, 2] for images.
  std::vector<int> axes(static_cast<size_t>(x.dim() - 1));
  std::iota(axes.begin(), axes.end(), 0);
  if (world_ && world_->size() > 1) {
    // The global batch's moments, as tf.nn.moments would take them over all processes' samples: sums over the
    // processes (all_reduce_sum, differentiable), divided by the global count.
    double count = static_cast<double>(x.numel() / features_);
    world_->sum(&count, 1);
    const float scale = static_cast<float>(1.0 / count);
    const Tensor mean = mul_scalar(all_reduce_sum(sum(x, axes), *world_), scale);
    const Tensor variance = mul_scalar(all_reduce_sum(sum(square(x - mean.detach()), axes), *world_), scale);
    return batch_normalization(x, mean, variance, beta_, gamma_, epsilon_);
  }
  const auto [mean, variance] = moments(x, axes);
  return batch_normalization(x, mean, variance, beta_, gamma_, epsilon_);
}

}  // namespace minidl
