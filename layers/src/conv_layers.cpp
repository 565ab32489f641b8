// Conv2D, pooling, GlobalAveragePooling2D and Flatten: shapes, forward through the ops, ONNX forms.
#include "minidl/conv_layers.h"

#include <cmath>

#include "minidl/onnx.h"

namespace minidl {
namespace {
std::string size_text(std::array<int64_t, 2> s) { return std::to_string(s[0]) + "x" + std::to_string(s[1]); }

// ONNX pads [top, left, bottom, right] for a window over an H×W input.
std::vector<int64_t> onnx_pads(const Window2d& w, const Shape& nhwc) {
  const int64_t bottom = std::max<int64_t>((w.out_h - 1) * w.sh + w.kh - nhwc[1] - w.pad_top, 0);
  const int64_t right = std::max<int64_t>((w.out_w - 1) * w.sw + w.kw - nhwc[2] - w.pad_left, 0);
  return {w.pad_top, w.pad_left, bottom, right};
}
}  // namespace

std::string export_channels_first(OnnxGraph& graph, const std::string& input, const std::string& name,
                                  const std::function<std::string(const std::string&)>& op) {
  const std::string nchw = graph.node("Transpose", {input}, name + "/to_nchw", {OnnxAttribute::integers("perm", {0, 3, 1, 2})});
  return graph.node("Transpose", {op(nchw)}, name + "/to_nhwc", {OnnxAttribute::integers("perm", {0, 2, 3, 1})});
}

Conv2D::Conv2D(int64_t in_channels, int64_t filters, std::array<int64_t, 2> kernel_size, Conv2DOptions options,
               Generator& gen, std::string name)
    : Module(std::move(name)), in_channels_(in_channels), filters_(filters), kernel_size_(kernel_size), options_(options) {
  if (in_channels < 1 || filters < 1 || kernel_size[0] < 1 || kernel_size[1] < 1)
    fail("Conv2D '", this->name(), "': channels, filters and kernel size must be >= 1, got ", in_channels, ", ", filters,
         " and ", size_text(kernel_size));
  if (options.strides[0] < 1 || options.strides[1] < 1)
    fail("Conv2D '", this->name(), "': strides must be >= 1, got ", size_text(options.strides));
  // glorot_uniform over the receptive field (docs/keras.md §4).
  const double field = static_cast<double>(kernel_size[0] * kernel_size[1]);
  const float limit = static_cast<float>(std::sqrt(6.0 / (field * static_cast<double>(in_channels + filters))));
  kernel_ = register_parameter("kernel", Tensor::uniform({kernel_size[0], kernel_size[1], in_channels, filters}, -limit,
                                                         limit, gen));
  if (options.use_bias) bias_ = register_parameter("bias", Tensor::zeros({filters}));
}

Shape Conv2D::output_shape(const Shape& input) const {
  if (input.rank() != 4 || input[3] != in_channels_)
    fail("Conv2D '", name(), "': expects images [batch, height, width, ", in_channels_, "], got ", input.str());
  try {
    const Window2d w = window2d("conv2d", input, kernel_size_, options_.strides, options_.padding);
    return {input[0], w.out_h, w.out_w, filters_};
  } catch (const Error& e) {
    fail("Conv2D '", name(), "': ", e.what());
  }
}

Tensor Conv2D::forward(const Tensor& x) {
  output_shape(x.shape());
  return conv2d(x, kernel_, bias_, options_.strides, options_.padding);
}

double Conv2D::product_flops(const Shape& input) const {
  const Shape out = output_shape(input);
  return 2.0 * static_cast<double>(out[0] * out[1] * out[2]) *
         static_cast<double>(kernel_size_[0] * kernel_size_[1] * in_channels_) * static_cast<double>(filters_);
}

std::string Conv2D::export_onnx(OnnxGraph& graph, const std::string& input, const Shape& input_shape) const {
  const Window2d w = window2d("conv2d", input_shape, kernel_size_, options_.strides, options_.padding);
  // ONNX's kernel is [out, in, kh, kw]; Keras stores [kh, kw, in, out].
  const int64_t kh = kernel_size_[0], kw = kernel_size_[1];
  Tensor oihw = Tensor::empty({filters_, in_channels_, kh, kw});
  for (int64_t i = 0; i < kh; ++i)
    for (int64_t j = 0; j < kw; ++j)
      for (int64_t c = 0; c < in_channels_; ++c)
        for (int64_t f = 0; f < filters_; ++f)
          oihw.data()[((f * in_channels_ + c) * kh + i) * kw + j] = kernel_.data()[((i * kw + j) * in_channels_ + c) * filters_ + f];
  std::vector<std::string> inputs{"", graph.constant(name() + "/kernel", oihw)};
  if (bias_.defined()) inputs.push_back(graph.constant(name() + "/bias", bias_));
  return export_channels_first(graph, input, name(), [&](const std::string& x) {
    inputs[0] = x;
    return graph.node("Conv", inputs, name() + "/conv",
                      {OnnxAttribute::integers("kernel_shape", {kh, kw}),
                       OnnxAttribute::integers("strides", {options_.strides[0], options_.strides[1]}),
                       OnnxAttribute::integers("pads", onnx_pads(w, input_shape))});
  });
}

Pooling2D::Pooling2D(Kind kind, std::array<int64_t, 2> pool_size, std::array<int64_t, 2> strides, Padding padding,
                     std::string name)
    : Module(std::move(name)), kind_(kind), pool_size_(pool_size), strides_(strides), padding_(padding) {
  if (pool_size[0] < 1 || pool_size[1] < 1 || strides[0] < 1 || strides[1] < 1)
    fail(type_name(), " '", this->name(), "': pool size and strides must be >= 1, got ", size_text(pool_size), " and ",
         size_text(strides));
}

Shape Pooling2D::output_shape(const Shape& input) const {
  if (input.rank() != 4) fail(type_name(), " '", name(), "': expects images [batch, height, width, channels], got ", input.str());
  try {
    const Window2d w = window2d(kind_ == Kind::max ? "max_pool2d" : "avg_pool2d", input, pool_size_, strides_, padding_);
    return {input[0], w.out_h, w.out_w, input[3]};
  } catch (const Error& e) {
    fail(type_name(), " '", name(), "': ", e.what());
  }
}

Tensor Pooling2D::forward(const Tensor& x) {
  output_shape(x.shape());
  return kind_ == Kind::max ? max_pool2d(x, pool_size_, strides_, padding_) : avg_pool2d(x, pool_size_, strides_, padding_);
}

std::string Pooling2D::export_onnx(OnnxGraph& graph, const std::string& input, const Shape& input_shape) const {
  const Window2d w = window2d("pooling", input_shape, pool_size_, strides_, padding_);
  std::vector<OnnxAttribute> attributes{OnnxAttribute::integers("kernel_shape", {pool_size_[0], pool_size_[1]}),
                                        OnnxAttribute::integers("strides", {strides_[0], strides_[1]}),
                                        OnnxAttribute::integers("pads", onnx_pads(w, input_shape))};
  // AveragePool leaves padding out of the count by default (count_include_pad = 0), as Keras does.
  return export_channels_first(graph, input, name(), [&](const std::string& x) {
    return graph.node(kind_ == Kind::max ? "MaxPool" : "AveragePool", {x}, name() + "/pool", attributes);
  });
}

Shape GlobalAveragePooling2D::output_shape(const Shape& input) const {
  if (input.rank() != 4)
    fail("GlobalAveragePooling2D '", name(), "': expects images [batch, height, width, channels], got ", input.str());
  return {input[0], input[3]};
}

Tensor GlobalAveragePooling2D::forward(const Tensor& x) {
  output_shape(x.shape());
  return mean(x, {1, 2});
}

std::string GlobalAveragePooling2D::export_onnx(OnnxGraph& graph, const std::string& input, const Shape&) const {
  return graph.node("ReduceMean", {input}, name(),
                    {OnnxAttribute::integers("axes", {1, 2}), OnnxAttribute::integer("keepdims", 0)});
}

Shape Flatten::output_shape(const Shape& input) const {
  if (input.rank() < 2) fail("Flatten '", name(), "': expects a batch [batch, ...], got ", input.str());
  return {input[0], input[0] ? input.numel() / input[0] : 0};
}

Tensor Flatten::forward(const Tensor& x) { return reshape(x, output_shape(x.shape())); }

std::string Flatten::export_onnx(OnnxGraph& graph, const std::string& input, const Shape&) const {
  return graph.node("Flatten", {input}, name(), {OnnxAttribute::integer("axis", 1)});
}

}  // namespace minidl
