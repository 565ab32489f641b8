// Losses and metrics with Keras semantics (docs/keras.md §5, §6).
#pragma once

#include <cstdint>
#include <span>

#include "minidl/tensor.h"

namespace minidl {

/// Keras categorical_crossentropy on probabilities, mean over samples. When y_pred is the output of softmax()
/// (e.g. Dense(..., Activation::softmax)), the loss is computed from its logits instead — stable, unclipped,
/// gradient (softmax − y)/N — exactly as Keras's fit does. Otherwise: p = y_pred / Σp, clipped to
/// [1e-7, 1 − 1e-7], loss = −Σ y log p.
Tensor categorical_crossentropy(const Tensor& y_true, const Tensor& y_pred);
/// The same with integer labels.
Tensor sparse_categorical_crossentropy(std::span<const int32_t> labels, const Tensor& y_pred);
/// The probability formula alone, never taking the logits path (for comparison and tests).
Tensor categorical_crossentropy_from_probabilities(const Tensor& y_true, const Tensor& y_pred);

/// Fraction of rows whose argmax (ties: lowest index) equals the label.
double accuracy(std::span<const int32_t> labels, const Tensor& y_pred);
/// Number of such rows.
int64_t count_correct(std::span<const int32_t> labels, const Tensor& y_pred);

}  // namespace minidl
