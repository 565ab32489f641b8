// Module and Sequential: registration and per-model names, named state and loading it, train/eval,
// trainable, declared input shapes (the Keras-style summary is in summary.cpp).
#include "minidl/module.h"

#include "minidl/internal/text.h"

#include <algorithm>
#include <numeric>
#include <cctype>
#include <iomanip>
#include <set>
#include <sstream>

#include "minidl/autograd.h"
#include "minidl/ops.h"

namespace minidl {
namespace {
using internal::starts_with;

// At most 8 names, for messages.
std::string join(const std::vector<std::string>& names, size_t most = 8) { return internal::join(names, ", ", most); }
}  // namespace

std::string Module::default_name() const {
  // Keras's to_snake_case: an underscore before a capital that starts a lowercase run ("BatchNormalization")
  // and between a lowercase letter and a capital ("ReLU" → "re_lu"), then lower case.
  const std::string type = type_name();
  std::string out;
  for (size_t i = 0; i < type.size(); ++i) {
    const char c = type[i];
    const bool upper = std::isupper(static_cast<unsigned char>(c));
    const bool starts_word = upper && i > 0 && i + 1 < type.size() && std::islower(static_cast<unsigned char>(type[i + 1]));
    const bool after_lower = upper && i > 0 && std::islower(static_cast<unsigned char>(type[i - 1]));
    if ((starts_word || after_lower) && out.back() != '_') out += '_';
    out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

int64_t Module::min_training_batch(const Shape&) const { return 1; }
int64_t Module::min_inference_batch(const Shape&) const { return 1; }
int64_t Module::training_batch_multiple() const { return 1; }
int64_t Module::min_batch_statistics_batch(const Shape& input) const { return min_inference_batch(input); }
double Module::product_flops(const Shape&) const { return 0.0; }

std::string Module::export_onnx(OnnxGraph&, const std::string&, const Shape&) const {
  fail("layer '", name(), "' (", type_name(), ") has no ONNX form");
}

void Module::check_new_name(const std::string& name) const {
  if (name.empty() || name.find('/') != std::string::npos)
    fail("module '", this->name(), "': bad name '", name, "' (names are non-empty and contain no '/')");
  if (taken_names_.count(name))
    fail("module '", this->name(), "': ",
         std::any_of(children_.begin(), children_.end(), [&](const auto& c) { return c->name() == name; })
             ? "a submodule is already named '" + name + "'"
             : "the name '" + name + "' is already registered");
}

Tensor Module::register_parameter(const std::string& name, Tensor t) {
  check_new_name(name);
  taken_names_.insert(name);
  t.set_requires_grad(true);
  parameters_.emplace_back(name, t);
  return t;
}

Tensor Module::register_buffer(const std::string& name, Tensor t) {
  check_new_name(name);
  taken_names_.insert(name);
  buffers_.emplace_back(name, t);
  return t;
}

void Module::register_generator(const std::string& name, Generator* generator) {
  MINIDL_ASSERT(generator != nullptr);
  generators_.emplace_back(name, generator);
}

std::string Module::free_name(const std::string& base) {
  // Names are never freed, so every suffix below the last one given out stays taken: the search resumes there
  // (building a model of n layers of one kind is linear in n, not quadratic).
  int64_t& k = next_suffix_[base];
  std::string candidate = k == 0 ? base : base + "_" + std::to_string(k);
  while (child_names_.count(candidate)) candidate = base + "_" + std::to_string(++k);
  return candidate;
}

void Module::name_flat_layers(Module& container) {
  for (const auto& layer : container.children_) {
    if (layer->names_flat()) name_flat_layers(*layer);  // a block in the block: its layers first
    if (layer->auto_named_) layer->name_ = free_name(layer->default_name());
    else check_new_name(layer->name_);
    taken_names_.insert(layer->name_);
    child_names_.insert(layer->name_);
  }
}

std::string Module::prefix_of(const Module& child) { return child.names_flat() ? "" : child.name() + "/"; }

void Module::adopt(std::shared_ptr<Module> child, const std::string& name) {
  MINIDL_ASSERT(child != nullptr);
  // A flat container in a flat container is named with the outer one, when that is registered: each layer is
  // renamed once, however deep the blocks nest.
  if (child->names_flat() && !names_flat()) name_flat_layers(*child);
  if (!name.empty()) {
    check_new_name(name);
    child->name_ = name;
    child->auto_named_ = false;
  } else if (child->name_.empty() || child->auto_named_) {
    child->name_ = free_name(child->default_name());
    child->auto_named_ = true;
  } else {
    check_new_name(child->name_);
  }
  taken_names_.insert(child->name_);
  child_names_.insert(child->name_);
  children_.push_back(std::move(child));
}

void Module::collect(const std::string& prefix, bool params, bool only_trainable, NamedTensors& out) const {
  if (only_trainable && !trainable_) return;
  for (const auto& [name, t] : params ? parameters_ : buffers_) out.emplace_back(prefix + name, t);
  for (const auto& child : children_) child->collect(prefix + prefix_of(*child), params, only_trainable, out);
}

void Module::collect_generators(const std::string& prefix, NamedGenerators& out) const {
  for (const auto& [name, g] : generators_) out.emplace_back(prefix + name, g);
  for (const auto& child : children_) child->collect_generators(prefix + prefix_of(*child), out);
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [name, t] : named_parameters(true)) out.push_back(t);
  return out;
}

NamedTensors Module::named_parameters(bool trainable_only) const {
  NamedTensors out;
  collect("", true, trainable_only, out);
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

NamedGenerators Module::named_generators() const {
  NamedGenerators out;
  collect_generators("", out);
  return out;
}

void Module::complete_state(std::map<std::string, Tensor>&, const std::string&) const {}

void Module::complete_tree(std::map<std::string, Tensor>& state, const std::string& prefix) const {
  complete_state(state, prefix);
  for (const auto& child : children_) child->complete_tree(state, prefix + prefix_of(*child));
}

LoadResult Module::load_state(const std::map<std::string, Tensor>& given, bool strict) {
  std::map<std::string, Tensor> state = given;  // handles: the copy shares the tensors
  complete_tree(state, "");
  const NamedTensors mine = this->state();
  LoadResult result;
  std::set<std::string> known;
  for (const auto& [name, t] : mine) {
    known.insert(name);
    const auto it = state.find(name);
    if (it == state.end())
      result.missing.push_back(name);
    else if (!(it->second.shape() == t.shape()))
      fail("load_state: '", name, "' has shape ", it->second.shape().str(), " in the state but ", t.shape().str(),
           " in the model");
  }
  for (const auto& [name, t] : state)
    if (!known.count(name) && !starts_with(name, kOptimizerStatePrefix)) result.unexpected.push_back(name);
  if (strict && !result.missing.empty()) {
    const Tensor& first = std::find_if(mine.begin(), mine.end(), [&](const auto& e) { return e.first == result.missing[0]; })->second;
    fail("load_state: '", result.missing[0], "' ", first.shape().str(), " is missing from the state",
         result.unexpected.empty() ? "" : ", and the state has '" + result.unexpected[0] + "', which the model does not");
  }
  if (strict && !result.unexpected.empty())
    fail("load_state: the state has '", result.unexpected[0], "', which the model does not");
  if (!strict && result.missing.size() == mine.size() && !mine.empty()) {
    std::vector<std::string> model_names, state_names;
    for (const auto& [name, t] : mine) model_names.push_back(name);
    for (const auto& [name, t] : state) state_names.push_back(name);
    fail("load_state: none of the state's tensors match the model's names, so nothing would load (the model has ",
         join(model_names, 4), "; the state has ", join(state_names, 4), ")");
  }
  for (const auto& [name, t] : mine) {
    const auto it = state.find(name);
    if (it != state.end()) Tensor(t).copy_(it->second);
  }
  if (!result.complete())
    warn("load_state: partial load of '", name(), "': ", result.missing.size(), " of the model's tensors kept their values",
         result.missing.empty() ? "" : " (" + join(result.missing) + ")", "; ", result.unexpected.size(),
         " of the state's tensors were not used", result.unexpected.empty() ? "" : " (" + join(result.unexpected) + ")");
  return result;
}

void Module::train(bool on) {
  training_ = on;
  for (auto& child : children_) child->train(on);
}

void Module::use_batch_statistics(bool on) {
  batch_statistics_ = on;
  for (auto& child : children_) child->use_batch_statistics(on);
}

void Module::on_epoch_begin(int64_t epoch, int64_t epochs) {
  for (auto& child : children_) child->on_epoch_begin(epoch, epochs);
}

void Module::set_trainable(bool on) {
  trainable_ = on;
  for (auto& child : children_) child->set_trainable(on);
}

void Module::zero_grad() {
  for (auto& [name, t] : named_parameters()) Tensor(t).zero_grad();
}

void Sequential::set_input_shape(const Shape& sample) {
  if (sample.rank() == 0 || sample.rank() + 1 > kMaxRank || sample.numel() <= 0)
    fail("Sequential '", name(), "': bad input shape ", sample.str(), " (one sample: at least one axis, no zeros)");
  input_shape_ = sample;
}

Shape Sequential::declared(const Shape& input) const {
  if (input_shape_.rank() == 0) return input;
  if (input.rank() < 1) fail("model '", name(), "': expects a batch of inputs, got shape ", input.str());
  Shape target{input[0]};
  for (int64_t d : input_shape_) target.push_back(d);
  if (target == input) return input;
  const int64_t per_sample = input[0] ? input.numel() / input[0] : 0;
  if (per_sample != input_shape_.numel())
    fail("model '", name(), "': expects inputs of shape [batch,", input_shape_.str().substr(1), " (",
         input_shape_.numel(), " values per sample), got ", input.str());
  return target;
}

Tensor Sequential::forward(const Tensor& x) {
  const Shape shape = declared(x.shape());
  Tensor h = shape == x.shape() ? x : reshape(x, shape);
  for (const auto& layer : children()) h = (*layer)(h);
  return h;
}

Shape Sequential::output_shape(const Shape& input) const {
  Shape s = declared(input);
  for (const auto& layer : children()) s = layer->output_shape(s);
  return s;
}

int64_t Sequential::largest_over_layers(const Shape& input, int64_t (Module::*needed_by)(const Shape&) const) const {
  Shape s = declared(input);
  int64_t needed = 1;
  for (const auto& layer : children()) {
    needed = std::max(needed, ((*layer).*needed_by)(s));
    s = layer->output_shape(s);
  }
  return needed;
}

int64_t Sequential::min_training_batch(const Shape& input) const {
  return largest_over_layers(input, &Module::min_training_batch);
}

int64_t Sequential::min_inference_batch(const Shape& input) const {
  return largest_over_layers(input, &Module::min_inference_batch);
}

int64_t Sequential::min_batch_statistics_batch(const Shape& input) const {
  return largest_over_layers(input, &Module::min_batch_statistics_batch);
}

int64_t Sequential::training_batch_multiple() const {
  int64_t multiple = 1;
  for (const auto& layer : children()) multiple = std::lcm(multiple, layer->training_batch_multiple());
  return multiple;
}

double Sequential::product_flops(const Shape& input) const {
  Shape s = declared(input);
  double flops = 0.0;
  for (const auto& layer : children()) {
    flops += layer->product_flops(s);
    s = layer->output_shape(s);
  }
  return flops;
}

double Sequential::training_product_flops(const Shape& input) const {
  // Each product's backward is two products of its size (to the weights, to the input); the first product
  // layer's input is the data, which needs no gradient.
  Shape s = declared(input);
  double flops = 0.0;
  bool first = true;
  for (const auto& layer : children()) {
    const double f = layer->product_flops(s);
    flops += f * (first && f > 0.0 ? 2.0 : 3.0);
    first = first && f == 0.0;
    s = layer->output_shape(s);
  }
  return flops;
}

}  // namespace minidl
