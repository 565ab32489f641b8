// Module and Sequential: registration, named state, train/eval, trainable, Keras-style names and summary.
#include "minidl/module.h"

#include <iomanip>
#include <mutex>
#include <set>
#include <sstream>

#include "minidl/autograd.h"

namespace minidl {

namespace {
std::mutex g_names_mutex;
std::map<std::string, int> g_name_counts;

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

std::string unique_name(const std::string& base) {
  const std::lock_guard lock(g_names_mutex);
  const int n = g_name_counts[base]++;
  return n == 0 ? base : base + "_" + std::to_string(n);
}

void clear_session() {
  const std::lock_guard lock(g_names_mutex);
  g_name_counts.clear();
}

Tensor& Module::register_parameter(const std::string& name, Tensor t) {
  t.set_requires_grad(true);
  parameters_.emplace_back(name, std::move(t));
  return parameters_.back().second;
}

Tensor& Module::register_buffer(const std::string& name, Tensor t) {
  buffers_.emplace_back(name, std::move(t));
  return buffers_.back().second;
}

void Module::collect(const std::string& prefix, bool params, bool only_trainable, NamedTensors& out) const {
  if (only_trainable && !trainable_) return;
  for (const auto& [name, t] : params ? parameters_ : buffers_) out.emplace_back(prefix + name, t);
  for (const auto& child : children_) child->collect(prefix + child->name() + "/", params, only_trainable, out);
}

std::vector<Tensor> Module::parameters() const {
  NamedTensors named;
  collect("", true, true, named);
  std::vector<Tensor> out;
  for (auto& [name, t] : named) out.push_back(t);
  return out;
}

NamedTensors Module::named_parameters() const {
  NamedTensors out;
  collect("", true, false, out);
  return out;
}

std::vector<Tensor> Module::buffers() const {
  std::vector<Tensor> out;
  for (auto& [name, t] : named_buffers()) out.push_back(t);
  return out;
}

NamedTensors Module::named_buffers() const {
  NamedTensors out;
  collect("", false, false, out);
  return out;
}

NamedTensors Module::state() const {
  NamedTensors out = named_parameters();
  for (auto& entry : named_buffers()) out.push_back(std::move(entry));
  return out;
}

void Module::load_state(const std::map<std::string, Tensor>& state, bool strict) {
  const NamedTensors mine = this->state();
  std::set<std::string> known;
  for (const auto& [name, t] : mine) {
    known.insert(name);
    const auto it = state.find(name);
    if (it == state.end()) {
      if (strict) fail("load_state: '", name, "' ", t.shape().str(), " is missing from the state");
      continue;
    }
    if (!(it->second.shape() == t.shape()))
      fail("load_state: '", name, "' has shape ", it->second.shape().str(), " in the state but ", t.shape().str(),
           " in the model");
  }
  if (strict)
    for (const auto& [name, t] : state)
      if (!known.count(name)) fail("load_state: the state has '", name, "', which the model does not");
  for (const auto& [name, t] : mine) {
    const auto it = state.find(name);
    if (it != state.end()) Tensor(t).copy_(it->second);
  }
}

void Module::train(bool on) {
  training_ = on;
  for (auto& child : children_) child->train(on);
}

void Module::set_trainable(bool on) {
  trainable_ = on;
  for (auto& child : children_) child->set_trainable(on);
}

void Module::zero_grad() {
  for (auto& [name, t] : named_parameters()) Tensor(t).zero_grad();
}

Tensor Sequential::forward(const Tensor& x) {
  Tensor h = x;
  for (const auto& layer : children()) h = layer->forward(h);
  return h;
}

Shape Sequential::output_shape(const Shape& input) const {
  Shape s = input;
  for (const auto& layer : children()) s = layer->output_shape(s);
  return s;
}

std::string Sequential::summary(const Shape& input_shape) const {
  constexpr int kLayer = 44, kShape = 18;
  const std::string rule(kLayer + kShape + 10, '_'), double_rule(kLayer + kShape + 10, '=');
  std::ostringstream out;
  out << "Model: \"" << name() << "\"\n" << rule << '\n';
  out << std::left << std::setw(kLayer) << " Layer (type)" << std::setw(kShape) << "Output Shape" << "Param #\n";
  out << double_rule << '\n';
  Shape shape = input_shape;
  int64_t trainable = 0, total = 0;
  for (const auto& layer : children()) {
    shape = layer->output_shape(shape);
    std::string shown = "(None";
    for (int axis = 1; axis < shape.rank(); ++axis) shown += ", " + std::to_string(shape[axis]);
    shown += ")";
    const int64_t params = count(layer->named_parameters()) + count(layer->named_buffers());
    out << std::setw(kLayer) << " " + layer->name() + " (" + layer->type_name() + ")" << std::setw(kShape) << shown
        << params << '\n';
    if (const std::string note = layer->summary_note(); !note.empty()) out << "     " << note << '\n';
    total += params;
    for (const Tensor& p : layer->parameters()) trainable += p.numel();
  }
  out << double_rule << '\n';
  out << "Total params: " << with_commas(total) << '\n';
  out << "Trainable params: " << with_commas(trainable) << '\n';
  out << "Non-trainable params: " << with_commas(total - trainable) << '\n' << rule << '\n';
  return out.str();
}

}  // namespace minidl
