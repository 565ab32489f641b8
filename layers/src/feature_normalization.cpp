// Keras's Normalization layer: per-feature standardisation with statistics adapted from the training data,
// kept as buffers, with its ONNX inference form.
#include <cmath>

#include "minidl/layers.h"
#include "minidl/onnx.h"
#include "minidl/ops.h"

namespace minidl {
namespace {
constexpr float kEpsilon = 1e-7f;  // Keras's backend epsilon: the smallest divisor

// max(sqrt(variance), ε) per feature: what the centred input is divided by.
Tensor divisor(const Tensor& variance) {
  Tensor d = Tensor::empty(variance.shape());
  for (int64_t i = 0; i < d.numel(); ++i) d.data()[i] = std::max(std::sqrt(variance.data()[i]), kEpsilon);
  return d;
}
}  // namespace

FeatureNormalization::FeatureNormalization(int64_t features, std::string name)
    : Normalization("Normalization", features, kEpsilon, std::move(name)) {
  mean_ = register_buffer("mean", Tensor::zeros({features}));
  variance_ = register_buffer("variance", Tensor::ones({features}));
  count_ = register_buffer("count", Tensor::zeros({1}));
}

Tensor FeatureNormalization::forward(const Tensor& x) {
  output_shape(x.shape());
  if (!adapted())
    fail("layer '", name(), "' (Normalization) has not been adapted: its mean and variance come from the training data "
         "(adapt_normalization(model, data), or FeatureNormalization::adapt) before the first step");
  return (x - mean_) / divisor(variance_);
}

void FeatureNormalization::adapt(const Tensor& x) {
  output_shape(x.shape());
  Accumulator a;
  a.add(x);
  adapt(a);
}

void FeatureNormalization::adapt(const Accumulator& a) {
  if (static_cast<int64_t>(a.mean.size()) != features_)
    fail("layer '", name(), "': statistics of ", a.mean.size(), " features, but it has ", features_);
  if (a.count < 1) fail("layer '", name(), "': cannot adapt to no samples");
  for (int64_t j = 0; j < features_; ++j) {
    const double variance = a.m2[j] / static_cast<double>(a.count);
    if (!std::isfinite(a.mean[j]) || !std::isfinite(variance))
      fail("layer '", name(), "': feature ", j, " has mean ", a.mean[j], " and variance ", variance,
           ": the data must be finite");
    mean_.data()[j] = static_cast<float>(a.mean[j]);
    variance_.data()[j] = static_cast<float>(variance);
  }
  count_.data()[0] = static_cast<float>(a.count);
}

std::string FeatureNormalization::export_onnx(OnnxGraph& graph, const std::string& input, const Shape&) const {
  const std::string n = name();
  const std::string centred = graph.node("Sub", {input, graph.constant(n + "/mean", mean_)}, n + "/centred");
  return graph.node("Div", {centred, graph.constant(n + "/divisor", divisor(variance_))}, n + "/normalised");
}

}  // namespace minidl
