// tf.nn.moments and tf.nn.batch_normalization, composed from core ops (no hand-written backward).
#include "minidl/functional.h"

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

}  // namespace minidl
