// Keras's RMSNormalization: each position scaled by the root mean square over its last axis, composed from core
// ops (autodiff gives the backward), with its ONNX inference form.
#include "minidl/layers.h"
#include "minidl/onnx.h"
#include "minidl/ops.h"

namespace minidl {

RMSNormalization::RMSNormalization(int64_t features, float epsilon, std::string name)
    : Normalization("RMSNormalization", features, epsilon, std::move(name)) {
  scale_ = register_parameter("scale", Tensor::ones({features}));
}

Tensor RMSNormalization::forward(const Tensor& x) {
  output_shape(x.shape());
  // x [..., C]:  y = x · rsqrt(mean(x², last axis) + ε) · scale. No centring, no offset.
  return x * rsqrt(add_scalar(mean(square(x), {-1}, true), epsilon_)) * scale_;
}

std::string RMSNormalization::export_onnx(OnnxGraph& graph, const std::string& input, const Shape&) const {
  const std::string n = name();
  const std::string squares = graph.node("Mul", {input, input}, n + "/squares");
  const std::string mean_square =
      graph.node("ReduceMean", {squares}, n + "/mean_square", {OnnxAttribute::integers("axes", {-1})});
  const std::string shifted =
      graph.node("Add", {mean_square, graph.constant(n + "/epsilon", Tensor::full({1}, epsilon_))}, n + "/shifted");
  const std::string rms = graph.node("Sqrt", {shifted}, n + "/rms");
  const std::string normalised = graph.node("Div", {input, rms}, n + "/normalised");
  return graph.node("Mul", {normalised, graph.constant(n + "/scale", scale_)}, n + "/scaled");
}

}  // namespace minidl
