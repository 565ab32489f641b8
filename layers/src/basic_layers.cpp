// Dense (glorot_uniform kernel, zero bias, optional relu/softmax), the activations (ReLU, Softmax, Sigmoid, Tanh,
// GELU, SiLU, LeakyReLU) and Dropout modules.
#include <cmath>

#include "minidl/functional.h"
#include "minidl/layers.h"
#include "minidl/onnx.h"
#include "minidl/ops.h"

namespace minidl {

Dense::Dense(int64_t in_features, int64_t units, Activation activation, Generator& gen, std::string name)
    : Module(std::move(name)), in_features_(in_features), units_(units), activation_(activation) {
  if (in_features <= 0 || units <= 0)
    fail("Dense '", this->name(), "': in_features and units must be > 0, got ", in_features, " and ", units);
  // glorot_uniform (docs/keras.md §4): U(−limit, limit), limit = sqrt(6 / (fan_in + fan_out)).
  const float limit = std::sqrt(6.0f / static_cast<float>(in_features + units));
  kernel_ = register_parameter("kernel", Tensor::uniform({in_features, units}, -limit, limit, gen));
  bias_ = register_parameter("bias", Tensor::zeros({units}));
}

Shape Dense::output_shape(const Shape& input) const {
  if (input.rank() != 2 || input[1] != in_features_)
    fail("Dense '", name(), "': expects input [batch, ", in_features_, "], got ", input.str(),
         input.rank() > 2 ? " — add flatten before it" : "");
  return {input[0], units_};
}

double Dense::product_flops(const Shape& input) const {
  return 2.0 * static_cast<double>(input[0]) * static_cast<double>(in_features_) * static_cast<double>(units_);
}

Tensor Dense::forward(const Tensor& x) {
  output_shape(x.shape());
  const Tensor z = linear(x, kernel_, bias_);  // x [B, in] · kernel [in, units] + bias
  switch (activation_) {
    case Activation::relu: return relu(z);
    case Activation::softmax: return softmax(z);
    case Activation::none: break;
  }
  return z;
}

std::string Dense::export_onnx(OnnxGraph& graph, const std::string& input, const Shape&) const {
  // Gemm: Y = X · kernel + bias, the kernel as Keras stores it, [in, units].
  const std::string y = graph.node("Gemm", {input, graph.constant(name() + "/kernel", kernel_), graph.constant(name() + "/bias", bias_)},
                                   name() + "/gemm");
  switch (activation_) {
    case Activation::relu: return graph.node("Relu", {y}, name() + "/relu");
    case Activation::softmax: return graph.node("Softmax", {y}, name() + "/softmax", {OnnxAttribute::integer("axis", -1)});
    case Activation::none: break;
  }
  return y;
}

Tensor ReLU::forward(const Tensor& x) { return relu(x); }
Tensor Softmax::forward(const Tensor& x) { return softmax(x); }
Tensor Sigmoid::forward(const Tensor& x) { return sigmoid(x); }

std::string Sigmoid::export_onnx(OnnxGraph& graph, const std::string& input, const Shape&) const {
  return graph.node("Sigmoid", {input}, name());
}

Tensor Tanh::forward(const Tensor& x) { return tanh(x); }
Tensor GELU::forward(const Tensor& x) { return gelu(x); }
Tensor SiLU::forward(const Tensor& x) { return silu(x); }

LeakyReLU::LeakyReLU(float alpha, std::string name) : Module(std::move(name)), alpha_(alpha) {
  if (!(alpha >= 0.0f) || !std::isfinite(alpha)) fail("LeakyReLU: alpha must be finite and >= 0, got ", alpha);
}

Tensor LeakyReLU::forward(const Tensor& x) { return leaky_relu(x, alpha_); }
std::string LeakyReLU::summary_note() const { return detail::concat("alpha ", alpha_); }

std::string Tanh::export_onnx(OnnxGraph& graph, const std::string& input, const Shape&) const {
  return graph.node("Tanh", {input}, name());
}

std::string GELU::export_onnx(OnnxGraph& graph, const std::string& input, const Shape&) const {
  // Opset 13 has no Gelu (it came in 20): x/2 · (1 + erf(x/√2)) from Div, Erf, Add and Mul.
  const std::string scaled = graph.node("Div", {input, graph.constant(name() + "/sqrt2", Tensor::scalar(std::sqrt(2.0f)))},
                                        name() + "/div");
  const std::string erf = graph.node("Erf", {scaled}, name() + "/erf");
  const std::string one_plus = graph.node("Add", {erf, graph.constant(name() + "/one", Tensor::scalar(1.0f))}, name() + "/add");
  const std::string half_x = graph.node("Mul", {input, graph.constant(name() + "/half", Tensor::scalar(0.5f))}, name() + "/half_x");
  return graph.node("Mul", {half_x, one_plus}, name());
}

std::string SiLU::export_onnx(OnnxGraph& graph, const std::string& input, const Shape&) const {
  return graph.node("Mul", {input, graph.node("Sigmoid", {input}, name() + "/sigmoid")}, name());
}

std::string LeakyReLU::export_onnx(OnnxGraph& graph, const std::string& input, const Shape&) const {
  return graph.node("LeakyRelu", {input}, name(), {OnnxAttribute::real("alpha", alpha_)});
}

std::string ReLU::export_onnx(OnnxGraph& graph, const std::string& input, const Shape&) const {
  return graph.node("Relu", {input}, name());
}

std::string Softmax::export_onnx(OnnxGraph& graph, const std::string& input, const Shape&) const {
  return graph.node("Softmax", {input}, name(), {OnnxAttribute::integer("axis", -1)});
}

std::string Dropout::export_onnx(OnnxGraph&, const std::string& input, const Shape&) const { return input; }

Dropout::Dropout(float rate, uint64_t seed, std::string name)
    : Module(std::move(name)), rate_(rate), generator_(seed) {
  if (!(rate >= 0.0f && rate < 1.0f))
    fail("Dropout '", this->name(), "': rate must be in [0, 1), got ", rate, " (the fraction of inputs dropped)");
  register_generator("seed_generator", &generator_);
}

Tensor Dropout::forward(const Tensor& x) {
  if (!is_training() || rate_ == 0.0f) return x;
  if (shards_ == 1 && global_rows_ == 0) return dropout(x, rate_, generator_);
  // The global batch's mask is drawn row after row: the slices before this process's, its own, those after.
  const auto skip = [this](int64_t n) {
    for (int64_t i = 0; i < n; ++i) generator_.uniform();
  };
  const int64_t rows = x.size(0), per_row = rows ? x.numel() / rows : 0;
  const int64_t before = global_rows_ ? slice_begin_ : shard_ * rows;
  const int64_t after = global_rows_ ? global_rows_ - slice_begin_ - rows : (shards_ - 1 - shard_) * rows;
  if (before < 0 || after < 0)
    fail("Dropout '", name(), "': a slice of ", rows, " rows from row ", slice_begin_, " does not fit a global batch of ",
         global_rows_);
  skip(before * per_row);
  Tensor y = dropout(x, rate_, generator_);
  skip(after * per_row);
  return y;
}

void Dropout::set_shard(int shard, int shards) {
  if (shards < 1 || shard < 0 || shard >= shards)
    fail("Dropout '", name(), "': shard ", shard, " of ", shards, " is out of range");
  shard_ = shard, shards_ = shards;
}

void Dropout::set_slice(int64_t begin, int64_t global_rows) {
  if (begin < 0 || global_rows < 1 || begin >= global_rows)
    fail("Dropout '", name(), "': a slice from row ", begin, " of a global batch of ", global_rows, " is out of range");
  slice_begin_ = begin, global_rows_ = global_rows;
}

int slice_dropout(Module& model, int64_t begin, int64_t global_rows) {
  return for_each_module<Dropout>(model, [=](Dropout& d) { d.set_slice(begin, global_rows); });
}

int shard_dropout(Module& model, int shard, int shards) {
  return for_each_module<Dropout>(model, [=](Dropout& d) { d.set_shard(shard, shards); });
}

}  // namespace minidl
