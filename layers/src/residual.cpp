// Residual blocks: forward through the body and the shortcut, their sum, shapes, batch requirements, FLOPs and
// the ONNX form (the two paths' nodes and an Add).
#include "minidl/residual.h"

#include <numeric>

#include "minidl/onnx.h"
#include "minidl/ops.h"

namespace minidl {
namespace {
// The shape after a run of layers.
Shape through(std::span<const std::shared_ptr<Module>> layers, Shape s) {
  for (const auto& layer : layers) s = layer->output_shape(s);
  return s;
}
}  // namespace

Residual::Residual(std::vector<std::shared_ptr<Module>> body, std::vector<std::shared_ptr<Module>> shortcut)
    : body_size_(body.size()) {
  if (body.empty()) fail("Residual: the block needs at least one layer (the shortcut alone would add x to itself)");
  for (auto& layer : body) {
    if (!layer) fail("Residual: a layer of the body is empty");
    register_module(std::move(layer));
  }
  for (auto& layer : shortcut) {
    if (!layer) fail("Residual: a layer of the shortcut is empty");
    register_module(std::move(layer));
  }
}

std::span<const std::shared_ptr<Module>> Residual::body() const { return {children().data(), body_size_}; }

std::span<const std::shared_ptr<Module>> Residual::shortcut() const {
  return {children().data() + body_size_, children().size() - body_size_};
}

Tensor Residual::forward(const Tensor& x) {
  Tensor h = x, s = x;
  for (const auto& layer : body()) h = (*layer)(h);
  for (const auto& layer : shortcut()) s = (*layer)(s);
  if (!(h.shape() == s.shape()))
    fail("residual block '", name(), "': its layers give ", h.shape().str(), " but its shortcut ", s.shape().str(),
         " for input ", x.shape().str(), " — the shapes must match to be added");
  return h + s;
}

Shape Residual::output_shape(const Shape& input) const {
  const Shape out = through(body(), input), skip = through(shortcut(), input);
  if (!(out == skip))
    fail("residual block '", name(), "': its layers give ", out.str(), " but its ",
         shortcut().empty() ? "identity shortcut passes the input, " : "shortcut gives ", skip.str(),
         " — the shapes must match to be added", shortcut().empty() ? " (a projection shortcut changes the shape)" : "");
  return out;
}

std::string Residual::summary_note() const {
  std::string note = "= " + std::to_string(body().size()) + " layer" + (body().size() == 1 ? "" : "s") + " + ";
  if (shortcut().empty()) return note + "identity shortcut";
  note += "shortcut";
  for (const auto& layer : shortcut()) note += " " + layer->name() + " (" + layer->type_name() + ")";
  return note;
}

int64_t Residual::largest(const Shape& input, int64_t (Module::*needed_by)(const Shape&) const) const {
  int64_t needed = 1;
  for (const auto path : {body(), shortcut()}) {
    Shape s = input;
    for (const auto& layer : path) {
      needed = std::max(needed, ((*layer).*needed_by)(s));
      s = layer->output_shape(s);
    }
  }
  return needed;
}

int64_t Residual::min_training_batch(const Shape& input) const { return largest(input, &Module::min_training_batch); }
int64_t Residual::min_inference_batch(const Shape& input) const { return largest(input, &Module::min_inference_batch); }
int64_t Residual::min_batch_statistics_batch(const Shape& input) const {
  return largest(input, &Module::min_batch_statistics_batch);
}

int64_t Residual::training_batch_multiple() const {
  int64_t multiple = 1;
  for (const auto& layer : children()) multiple = std::lcm(multiple, layer->training_batch_multiple());
  return multiple;
}

double Residual::product_flops(const Shape& input) const {
  double flops = 0.0;
  for (const auto path : {body(), shortcut()}) {
    Shape s = input;
    for (const auto& layer : path) {
      flops += layer->product_flops(s);
      s = layer->output_shape(s);
    }
  }
  return flops;
}

std::string Residual::export_onnx(OnnxGraph& graph, const std::string& input, const Shape& input_shape) const {
  const auto chain = [&](std::span<const std::shared_ptr<Module>> layers) {
    std::string value = input;
    Shape shape = input_shape;
    for (const auto& layer : layers) {
      value = layer->export_onnx(graph, value, shape);
      shape = layer->output_shape(shape);
    }
    return value;
  };
  const std::string out = chain(body()), skip = chain(shortcut());
  return graph.node("Add", {out, skip}, name());
}

}  // namespace minidl
