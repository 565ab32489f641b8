// Sequential::summary: the table Keras's model.summary() prints, with each residual block's layers and shortcut
// listed under it.
#include <algorithm>
#include <functional>
#include <iomanip>
#include <sstream>

#include "minidl/module.h"
#include "minidl/residual.h"

namespace minidl {
namespace {
std::string with_commas(int64_t n) {
  std::string digits = std::to_string(n), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

int64_t count(const NamedTensors& tensors) {
  int64_t n = 0;
  for (const auto& [name, t] : tensors) n += t.numel();
  return n;
}

}  // namespace

std::string Sequential::summary() const {
  if (input_shape_.rank() == 0)
    fail("Sequential '", name(), "': summary() needs a declared input shape (set_input_shape), or pass one");
  Shape batch{1};
  for (int64_t d : input_shape_) batch.push_back(d);
  return summary(batch);
}

std::string Sequential::summary(const Shape& input_shape) const {
  // One row per layer; a residual block's row comes first, then its layers indented, then its shortcut's
  // (marked +). Notes go on a line of their own under their layer.
  struct Row {
    std::string label, shape, params;  // params empty: a note line, its text in label
  };
  std::vector<Row> rows;
  const std::function<void(const Module&, const Shape&, const std::string&)> add_rows = [&](const Module& layer, const Shape& in,
                                                                                          const std::string& indent) {
    const Shape after = layer.output_shape(in);
    std::string shown = "(None";
    for (int axis = 1; axis < after.rank(); ++axis) shown += ", " + std::to_string(after[axis]);
    shown += ")";
    const int64_t params = count(layer.named_parameters()) + count(layer.named_buffers());
    rows.push_back({" " + indent + layer.name() + " (" + layer.type_name() + ")", shown, std::to_string(params)});
    const std::string under(indent.size(), ' ');
    const auto* block = dynamic_cast<const Residual*>(&layer);
    if (!block) {
      if (const std::string note = layer.summary_note(); !note.empty()) rows.push_back({"     " + under + note, "", ""});
      return;
    }
    Shape s = in;
    for (const auto& inner : block->body()) add_rows(*inner, s, under + "  "), s = inner->output_shape(s);
    if (block->shortcut().empty()) rows.push_back({" " + under + "  + identity shortcut", "", ""});
    s = in;
    for (const auto& inner : block->shortcut()) add_rows(*inner, s, under + "  + "), s = inner->output_shape(s);
  };
  Shape shape = declared(input_shape);
  int64_t trainable = 0, total = 0;
  for (const auto& layer : children()) {
    add_rows(*layer, shape, "");
    shape = layer->output_shape(shape);
    total += count(layer->named_parameters()) + count(layer->named_buffers());
    for (const Tensor& p : layer->parameters()) trainable += p.numel();
  }
  size_t width = 46, shape_width = 22;  // Keras's columns, wider when a name needs it
  for (const Row& r : rows)
    if (!r.params.empty()) width = std::max(width, r.label.size() + 2), shape_width = std::max(shape_width, r.shape.size() + 2);
  const std::string rule(width + shape_width + 10, '_'), double_rule(width + shape_width + 10, '=');
  std::ostringstream out;
  out << "Model: \"" << name() << "\"\n" << rule << '\n';
  out << std::left << std::setw(static_cast<int>(width)) << " Layer (type)" << std::setw(static_cast<int>(shape_width))
      << "Output Shape" << "Param #\n";
  out << double_rule << '\n';
  for (const Row& r : rows) {
    if (r.params.empty()) out << r.label << '\n';
    else out << std::setw(static_cast<int>(width)) << r.label << std::setw(static_cast<int>(shape_width)) << r.shape << r.params << '\n';
  }
  out << double_rule << '\n';
  out << "Total params: " << with_commas(total) << '\n';
  out << "Trainable params: " << with_commas(trainable) << '\n';
  out << "Non-trainable params: " << with_commas(total - trainable) << '\n';
  // FLOPs of the products (dense and convolution layers; 2 per multiply-add) for one sample, batch axis 1.
  Shape one = declared(input_shape);
  one[0] = 1;
  out << "FLOPs per sample: " << with_commas(static_cast<int64_t>(product_flops(one))) << " forward, "
      << with_commas(static_cast<int64_t>(training_product_flops(one))) << " a training step (the matrix products)\n";
  out << rule << '\n';
  return out.str();
}

}  // namespace minidl
