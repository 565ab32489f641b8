// The layers: Dense, ReLU, Softmax, Dropout, Keras-exact BatchNormalization and the document's Example 3
// normalisation (moments + batch_normalization) as a layer.
#pragma once

#include "minidl/module.h"
#include "minidl/random.h"

namespace minidl {

enum class Activation { none, relu, softmax };

/// Keras Dense: kernel [in, units] (glorot_uniform), bias zeros, y = activation(x·kernel + bias).
class Dense : public Module {
 public:
  Dense(int64_t in_features, int64_t units, Activation activation = Activation::none,
        Generator& gen = default_generator(), std::string name = {});
  Tensor forward(const Tensor& x) override;
  Shape output_shape(const Shape& input) const override;
  double product_flops(const Shape& input) const override;
  std::string export_onnx(OnnxGraph& graph, const std::string& input, const Shape& input_shape) const override;
  std::string type_name() const override { return "Dense"; }
  Tensor& kernel() { return kernel_; }
  Tensor& bias() { return bias_; }
  Activation activation() const { return activation_; }

 private:
  int64_t in_features_, units_;
  Activation activation_;
  Tensor kernel_, bias_;
};

class ReLU : public Module {
 public:
  explicit ReLU(std::string name = {}) : Module(std::move(name)) {}
  Tensor forward(const Tensor& x) override;
  std::string export_onnx(OnnxGraph& graph, const std::string& input, const Shape& input_shape) const override;
  std::string type_name() const override { return "ReLU"; }
};

/// Softmax over the last axis.
class Softmax : public Module {
 public:
  explicit Softmax(std::string name = {}) : Module(std::move(name)) {}
  Tensor forward(const Tensor& x) override;
  std::string export_onnx(OnnxGraph& graph, const std::string& input, const Shape& input_shape) const override;
  std::string type_name() const override { return "Softmax"; }
};

/// Keras Dropout (inverted): in training each element is kept with probability 1 − rate and scaled by
/// 1 / (1 − rate), else set to 0; in inference the identity. The masks come from the layer's own generator,
/// seeded at construction, so a seeded run draws the same masks, and a checkpoint can save where it stands.
class Dropout : public Module {
 public:
  explicit Dropout(float rate, uint64_t seed = 0, std::string name = {});
  Tensor forward(const Tensor& x) override;
  /// Inference form: the identity, so nothing is added.
  std::string export_onnx(OnnxGraph& graph, const std::string& input, const Shape& input_shape) const override;
  std::string type_name() const override { return "Dropout"; }
  float rate() const { return rate_; }

 private:
  float rate_;
  Generator generator_;
};

struct BatchNormalizationOptions {
  /// Keras convention: the weight kept on the OLD moving value,
  ///   moving = moving·momentum + batch·(1 − momentum).
  /// PyTorch's momentum is the weight on the NEW value: torch momentum = 1 − Keras momentum (0.99 ↔ 0.01).
  float momentum = 0.99f;
  float epsilon = 1e-3f;  ///< Added to the variance inside the square root.
  bool center = true;     ///< Learn beta.
  bool scale = true;      ///< Learn gamma.
};

/// Keras BatchNormalization over the last axis (docs/keras.md §1). Training mode: batch mean and biased variance, the
/// moving statistics updated as a side effect of forward; inference mode (or trainable = false): the
/// moving statistics, untouched. momentum = 0 leaves the moving statistics equal to the last training batch's.
class BatchNormalization : public Module {
 public:
  explicit BatchNormalization(int64_t features, BatchNormalizationOptions options = {},
                              std::string name = {});
  Tensor forward(const Tensor& x) override;
  Shape output_shape(const Shape& input) const override;
  int64_t min_training_batch(const Shape& input) const override;
  std::string export_onnx(OnnxGraph& graph, const std::string& input, const Shape& input_shape) const override;
  std::string type_name() const override { return "BatchNormalization"; }
  std::string summary_note() const override;
  const BatchNormalizationOptions& options() const { return options_; }
  Tensor& gamma() { return gamma_; }  ///< Undefined when scale is false.
  Tensor& beta() { return beta_; }    ///< Undefined when center is false.
  Tensor& moving_mean() { return moving_mean_; }
  Tensor& moving_variance() { return moving_variance_; }

 private:
  int64_t features_;
  BatchNormalizationOptions options_;
  Tensor gamma_, beta_, moving_mean_, moving_variance_;
};

/// The document's Example 3 as a layer: always normalises with the statistics of the batch it is given,
/// through tf.nn.moments over axis 0 and tf.nn.batch_normalization with learned beta and gamma; autodiff
/// differentiates through the statistics. No moving statistics, so evaluation also uses batch statistics.
class MomentsNormalization : public Module {
 public:
  explicit MomentsNormalization(int64_t features, float epsilon = 1e-3f,
                                std::string name = {});
  Tensor forward(const Tensor& x) override;
  Shape output_shape(const Shape& input) const override;
  int64_t min_training_batch(const Shape& input) const override;
  /// As in training: it normalises every batch it is given with that batch's statistics.
  int64_t min_inference_batch(const Shape& input) const override { return min_training_batch(input); }
  /// Refuses: it always normalises with the statistics of the batch it is given, so it has no inference form.
  std::string export_onnx(OnnxGraph& graph, const std::string& input, const Shape& input_shape) const override;
  std::string type_name() const override { return "MomentsNormalization"; }
  /// Named like the BatchNormalization it stands in for, so the three modes share tensor names.
  std::string default_name() const override { return "batch_normalization"; }
  Tensor& gamma() { return gamma_; }
  Tensor& beta() { return beta_; }

 private:
  int64_t features_;
  float epsilon_;
  Tensor gamma_, beta_;
};

}  // namespace minidl
