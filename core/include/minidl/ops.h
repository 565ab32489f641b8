// The differentiable ops: elementwise with broadcasting, reductions, linear algebra, shape ops, nn ops.
// Each op's forward and backward live together in core/src/ops_*.cpp.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <vector>

#include "minidl/tensor.h"

namespace minidl {

// Elementwise, binary, with NumPy broadcasting (a scalar; a row vector over a matrix; keepdims reductions
// against their source). Gradients are summed over broadcast axes.
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
/// Elementwise max; on ties the gradient goes to a (as TensorFlow's Maximum).
Tensor maximum(const Tensor& a, const Tensor& b);

// Elementwise, unary.
Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);  ///< 1 / sqrt(x)
Tensor square(const Tensor& x);
Tensor pow(const Tensor& x, float exponent);
Tensor relu(const Tensor& x);  ///< max(x, 0); gradient 0 at 0.
Tensor abs(const Tensor& x);   ///< |x|; gradient sign(x), 0 at 0.
/// 1 / (1 + exp(−x)), computed without overflow for either sign. The result remembers its logits (see
/// sigmoid_logits_of).
Tensor sigmoid(const Tensor& x);
/// The hyperbolic tangent.
Tensor tanh(const Tensor& x);
/// Keras's gelu (approximate = False): x·Φ(x) = x/2 · (1 + erf(x/√2)); gradient Φ(x) + x·φ(x).
Tensor gelu(const Tensor& x);
/// Keras's silu (swish): x·sigmoid(x); gradient s·(1 + x·(1 − s)) with s = sigmoid(x).
Tensor silu(const Tensor& x);
/// Keras's LeakyReLU: x for x > 0, alpha·x otherwise (alpha >= 0); gradient 1 above 0, alpha at and below 0 (as
/// TensorFlow's LeakyReluGrad).
Tensor leaky_relu(const Tensor& x, float alpha);
/// Clamps into [lo, hi]; the gradient passes where lo <= x <= hi (as TensorFlow's clip_by_value).
Tensor clip(const Tensor& x, float lo, float hi);
Tensor add_scalar(const Tensor& x, float s);
Tensor mul_scalar(const Tensor& x, float s);

// Reductions. Empty axes = all axes. Negative axes count from the end.
Tensor sum(const Tensor& x, std::vector<int> axes = {}, bool keepdims = false);
Tensor mean(const Tensor& x, std::vector<int> axes = {}, bool keepdims = false);

// Linear algebra.
/// 2-D product op(a)·op(b), where op transposes when asked. [M,K] x [K,N] -> [M,N].
Tensor matmul(const Tensor& a, const Tensor& b, bool transpose_a = false, bool transpose_b = false);

// Shape.
/// Same values in a new shape (shares storage); one dimension may be -1: reshape(x, {-1, 784}).
Tensor reshape(const Tensor& x, std::initializer_list<int64_t> dims);
Tensor reshape(const Tensor& x, std::span<const int64_t> dims);
Tensor reshape(const Tensor& x, const Shape& shape);
/// Swaps two axes (by default the last two), copying.
Tensor transpose(const Tensor& x, int axis0 = -2, int axis1 = -1);

/// Fused x·w + b for x [N,K], w [K,M], b [M] (b may be undefined): one output, one backward.
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b);

// Convolution and pooling on images [N, H, W, C] (channels last), as Keras's layers.
enum class Padding {
  valid,  ///< only windows that fit inside the input
  same,   ///< ceil(size / stride) outputs, zero padding split evenly (the extra one after)
};
/// A window sliding over images: its size, strides, the output size and the padding before it.
struct Window2d {
  int64_t kh = 1, kw = 1, sh = 1, sw = 1, out_h = 0, out_w = 0, pad_top = 0, pad_left = 0;
};
/// The window of `size` at `strides` over images shaped like x; throws naming `op` when it does not fit.
Window2d window2d(const char* op, const Shape& x, std::array<int64_t, 2> size, std::array<int64_t, 2> strides,
                  Padding padding);
/// x [N,H,W,C] convolved with kernel [kh,kw,C,F] (+ bias [F], may be undefined) → [N,Ho,Wo,F], through im2col and
/// the packed matrix product.
Tensor conv2d(const Tensor& x, const Tensor& kernel, const Tensor& bias, std::array<int64_t, 2> strides = {1, 1},
              Padding padding = Padding::valid);
/// The maximum of each window (of the positions inside the input); NaN propagates. Gradient to the first maximum.
Tensor max_pool2d(const Tensor& x, std::array<int64_t, 2> size, std::array<int64_t, 2> strides,
                  Padding padding = Padding::valid);
/// The mean of each window over the positions inside the input (padding not counted).
Tensor avg_pool2d(const Tensor& x, std::array<int64_t, 2> size, std::array<int64_t, 2> strides,
                  Padding padding = Padding::valid);

// Neural-network ops on the last axis.
/// Stable: subtracts the row max. The result remembers its logits (see softmax_logits_of).
Tensor softmax(const Tensor& x);
Tensor log_softmax(const Tensor& x);  ///< Stable: x - max - log(sum(exp(x - max))).
/// [N] integer labels -> [N, classes] one-hot rows (no gradient). Throws on a label out of range.
Tensor one_hot(std::span<const int32_t> labels, int64_t classes);
/// x [N, C], labels [N] -> [N] with out[i] = x[i, labels[i]]; the gradient scatters back.
Tensor gather(const Tensor& x, std::span<const int32_t> labels);

/// Mean over rows of the cross-entropy between target distributions y [N,C] (e.g. one-hot) and
/// softmax(logits): logsumexp(z) − Σ y·z. Fused backward: (softmax(z)·Σy − y) / N.
Tensor softmax_cross_entropy(const Tensor& logits, const Tensor& targets);
/// The same with integer labels [N]: logsumexp(z) − z[label].
Tensor sparse_softmax_cross_entropy(const Tensor& logits, std::span<const int32_t> labels);
/// The logits a tensor is the softmax of, or an undefined tensor when it was not made by softmax().
Tensor softmax_logits_of(const Tensor& probabilities);
/// Mean over every element of the binary cross-entropy between targets y (in [0, 1]) and sigmoid(logits), in
/// the stable form max(z, 0) − z·y + log(1 + exp(−|z|)) (TensorFlow's sigmoid_cross_entropy_with_logits).
/// Fused backward: (sigmoid(z) − y) / numel.
Tensor sigmoid_cross_entropy(const Tensor& logits, const Tensor& targets);
/// The logits a tensor is the sigmoid of, or an undefined tensor when it was not made by sigmoid().
Tensor sigmoid_logits_of(const Tensor& probabilities);

// Operators where they read naturally.
inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator-(const Tensor& x) { return neg(x); }
inline Tensor operator+(const Tensor& a, float s) { return add_scalar(a, s); }
inline Tensor operator+(float s, const Tensor& a) { return add_scalar(a, s); }
inline Tensor operator-(const Tensor& a, float s) { return add_scalar(a, -s); }
inline Tensor operator-(float s, const Tensor& a) { return add_scalar(neg(a), s); }
inline Tensor operator*(const Tensor& a, float s) { return mul_scalar(a, s); }
inline Tensor operator*(float s, const Tensor& a) { return mul_scalar(a, s); }
inline Tensor operator/(const Tensor& a, float s) { return mul_scalar(a, 1.0f / s); }
inline Tensor operator/(float s, const Tensor& a) { return div(Tensor::scalar(s), a); }

// ---- Data parallelism --------------------------------------------------------------------------------------

class Communicator;
/// x summed over every process of `world` (the identity in a world of one). Backward sums the gradient over the
/// processes too, since every process's loss depends on every process's x through the sum.
Tensor all_reduce_sum(const Tensor& x, Communicator& world);

}  // namespace minidl
