// Functional normalisation: tf.nn.moments and tf.nn.batch_normalization (the document's Example 3), composed
// from core ops so autodiff differentiates through the batch statistics; and the fused kernels the
// BatchNormalization layer uses, with hand-written backward passes.
#pragma once

#include <utility>
#include <vector>

#include "minidl/random.h"
#include "minidl/tensor.h"

namespace minidl {

/// (mean, biased variance) over `axes`; variance uses the mean with its gradient stopped, as TensorFlow.
std::pair<Tensor, Tensor> moments(const Tensor& x, const std::vector<int>& axes, bool keepdims = false);

/// inv = rsqrt(variance + epsilon)·scale; y = x·inv + (offset − mean·inv). offset and scale may be undefined.
Tensor batch_normalization(const Tensor& x, const Tensor& mean, const Tensor& variance, const Tensor& offset,
                           const Tensor& scale, float epsilon);

/// Inverted dropout (tf.nn.dropout): each element kept with probability 1 − rate and scaled by 1/(1 − rate),
/// else 0; the mask is drawn from `gen`, one uniform number per element in row-major order. Composed as
/// x · mask, so autodiff gives the gradient mask · upstream.
Tensor dropout(const Tensor& x, float rate, Generator& gen);

/// Fused training-mode batch norm over all axes but the last, x [..., C]: y = gamma·(x − μ)/sqrt(σ² + eps)
/// + beta with the batch mean μ and biased variance σ², written to batch_mean / batch_variance ([C]).
/// gamma and beta may be undefined (scale 1, offset 0).
Tensor batch_norm_train(const Tensor& x, const Tensor& gamma, const Tensor& beta, float epsilon,
                        Tensor& batch_mean, Tensor& batch_variance);
/// Fused inference-mode batch norm with given statistics (no gradient to them).
Tensor batch_norm_inference(const Tensor& x, const Tensor& mean, const Tensor& variance, const Tensor& gamma,
                            const Tensor& beta, float epsilon);

class Communicator;
/// batch_norm_train with synchronised statistics (Keras's synchronized=True): Σx, Σx² and the count are summed
/// over `world`'s processes, mean = Σx/count, variance = max(Σx²/count − mean², 0); backward sums Σdy and Σdy·x̂
/// over the processes too. In a world of one it equals batch_norm_train up to rounding.
Tensor batch_norm_train_synced(const Tensor& x, const Tensor& gamma, const Tensor& beta, float epsilon,
                               Communicator& world, Tensor& batch_mean, Tensor& batch_variance);

/// Fused group normalisation, x [N, S, C] (S positions per sample, C channels in `groups` groups of C/groups):
/// each sample's group is normalised with its own mean and biased variance over its S·C/groups values, then
/// y = gamma[c]·x̂ + beta[c] (gamma, beta [C] or undefined). Keras's GroupNormalization; with groups = 1 and S = 1 it
/// is LayerNormalization over the last axis. Hand-written backward.
Tensor group_norm(const Tensor& x, int64_t groups, const Tensor& gamma, const Tensor& beta, float epsilon);

}  // namespace minidl
