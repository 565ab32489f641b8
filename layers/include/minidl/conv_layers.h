// Layers for images, channels last (NHWC) as Keras: Conv2D, MaxPooling2D, AveragePooling2D,
// GlobalAveragePooling2D and Flatten.
#pragma once

#include <array>
#include <functional>

#include "minidl/module.h"
#include "minidl/ops.h"
#include "minidl/random.h"

namespace minidl {

struct Conv2DOptions {
  std::array<int64_t, 2> strides{1, 1};
  Padding padding = Padding::valid;
  bool use_bias = true;
};

/// Keras Conv2D: kernel [kh, kw, in, filters] (glorot_uniform with fan_in = kh·kw·in, fan_out = kh·kw·filters),
/// bias zeros; y = conv(x, kernel) + bias on x [N, H, W, in].
class Conv2D : public Module {
 public:
  Conv2D(int64_t in_channels, int64_t filters, std::array<int64_t, 2> kernel_size, Conv2DOptions options = {},
         Generator& gen = default_generator(), std::string name = {});
  Tensor forward(const Tensor& x) override;
  Shape output_shape(const Shape& input) const override;
  double product_flops(const Shape& input) const override;
  std::string export_onnx(OnnxGraph& graph, const std::string& input, const Shape& input_shape) const override;
  std::string type_name() const override { return "Conv2D"; }
  Tensor& kernel() { return kernel_; }
  Tensor& bias() { return bias_; }  ///< undefined without use_bias

 private:
  int64_t in_channels_, filters_;
  std::array<int64_t, 2> kernel_size_;
  Conv2DOptions options_;
  Tensor kernel_, bias_;
};

/// Keras MaxPooling2D / AveragePooling2D: the maximum or mean of each pool_size window; strides default to the
/// pool size.
class Pooling2D : public Module {
 public:
  enum class Kind { max, average };
  Pooling2D(Kind kind, std::array<int64_t, 2> pool_size, std::array<int64_t, 2> strides, Padding padding = Padding::valid,
            std::string name = {});
  Tensor forward(const Tensor& x) override;
  Shape output_shape(const Shape& input) const override;
  std::string export_onnx(OnnxGraph& graph, const std::string& input, const Shape& input_shape) const override;
  std::string type_name() const override { return kind_ == Kind::max ? "MaxPooling2D" : "AveragePooling2D"; }

 private:
  Kind kind_;
  std::array<int64_t, 2> pool_size_, strides_;
  Padding padding_;
};

/// Keras GlobalAveragePooling2D: the mean over height and width, [N, H, W, C] → [N, C].
class GlobalAveragePooling2D : public Module {
 public:
  explicit GlobalAveragePooling2D(std::string name = {}) : Module(std::move(name)) {}
  Tensor forward(const Tensor& x) override;
  Shape output_shape(const Shape& input) const override;
  std::string export_onnx(OnnxGraph& graph, const std::string& input, const Shape& input_shape) const override;
  std::string type_name() const override { return "GlobalAveragePooling2D"; }
};

/// Keras Flatten: [N, ...] → [N, product], in row-major (channels-last) order.
class Flatten : public Module {
 public:
  explicit Flatten(std::string name = {}) : Module(std::move(name)) {}
  Tensor forward(const Tensor& x) override;
  Shape output_shape(const Shape& input) const override;
  std::string export_onnx(OnnxGraph& graph, const std::string& input, const Shape& input_shape) const override;
  std::string type_name() const override { return "Flatten"; }
};

/// ONNX works on images as [N, C, H, W]: `op` is applied between transposes from and back to minidl's
/// [N, H, W, C] (ONNX Runtime removes the transposes that cancel between consecutive layers).
std::string export_channels_first(OnnxGraph& graph, const std::string& input, const std::string& name,
                                  const std::function<std::string(const std::string&)>& op);

}  // namespace minidl
