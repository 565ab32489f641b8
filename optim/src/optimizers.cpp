// Adam, AdamW and SGD: one fused, allocation-free loop over each parameter's storage per step; decoupled weight
// decay before it.
#include <algorithm>
#include <cmath>
#include <set>

#include "minidl/autograd.h"
#include "minidl/internal/kernels.h"
#include "minidl/internal/parallel.h"
#include "minidl/optim.h"

namespace minidl {
namespace {
std::vector<Tensor> zeros_like_each(const std::vector<Tensor>& tensors) {
  std::vector<Tensor> out;
  for (const Tensor& t : tensors) out.push_back(Tensor::zeros(t.shape()));
  return out;
}

// Keras's Adam update of elements [begin, end). Pointer parameters marked __restrict so GCC vectorises it
// (pointers captured by a lambda lose that promise: measured 0.20 -> 0.52 s per epoch).
[[gnu::always_inline]] inline void adam_update(float* __restrict theta, const float* __restrict g, float* __restrict m,
                                               float* __restrict v, float* __restrict v_max, int64_t begin, int64_t end,
                                               float alpha, float b1, float b2, float eps) {
  if (v_max) {
    for (int64_t k = begin; k < end; ++k) {
      m[k] += (g[k] - m[k]) * (1.0f - b1);
      v[k] += (g[k] * g[k] - v[k]) * (1.0f - b2);
      v_max[k] = std::max(v_max[k], v[k]);
      theta[k] -= alpha * m[k] / (std::sqrt(v_max[k]) + eps);
    }
  } else {
    for (int64_t k = begin; k < end; ++k) {
      m[k] += (g[k] - m[k]) * (1.0f - b1);
      v[k] += (g[k] * g[k] - v[k]) * (1.0f - b2);
      theta[k] -= alpha * m[k] / (std::sqrt(v[k]) + eps);
    }
  }
}

// Adam splits its pass between threads over a million parameters, or when the step's products ran on several
// threads. Alone, two threads update the document model's 51k parameters 1.7x faster (14 vs 24 us); but at batch
// 32, where every product runs on this thread, splitting made the step 30 us slower: the other core must first
// fetch the gradients, and the next forward pass fetch its half of the weights back. Where the products ran on
// several threads, the gradients already lie in several cores' caches, and threads take the same halves the
// weight gradient's copies were added in (batch 256 on two threads: 612 -> 587 us a step, alternating both
// rules in one process).
constexpr int64_t kAdamParallelParameters = int64_t{1} << 20;

std::vector<Tensor> handles(const NamedTensors& named) {
  std::vector<Tensor> out;
  for (const auto& [name, t] : named) out.push_back(t);
  return out;
}
}  // namespace

Optimizer::Optimizer(std::vector<Tensor> parameters, float learning_rate) : parameters_(std::move(parameters)) {
  for (size_t i = 0; i < parameters_.size(); ++i) {
    if (!parameters_[i].defined() || !parameters_[i].requires_grad() || !parameters_[i].is_leaf())
      fail("optimizer: parameter ", i, " must be a leaf tensor with requires_grad (use model.parameters())");
    names_.push_back(std::to_string(i));
  }
  set_learning_rate(learning_rate);
}

Optimizer::Optimizer(const NamedTensors& parameters, float learning_rate) : Optimizer(handles(parameters), learning_rate) {
  for (size_t i = 0; i < parameters.size(); ++i) names_[i] = parameters[i].first;
}

void Optimizer::name_parameters(const NamedTensors& named) {
  std::vector<std::string> names;
  for (size_t i = 0; i < parameters_.size(); ++i) {
    const auto it = std::find_if(named.begin(), named.end(), [&](const auto& e) { return e.second.same(parameters_[i]); });
    if (it == named.end())
      fail("optimizer: parameter ", i, " (", parameters_[i].shape().str(), ") is not among the model's parameters");
    names.push_back(it->first);
  }
  names_ = std::move(names);
}

NamedTensors Optimizer::state() const {
  NamedTensors out;
  for (const auto& [slot, tensors] : slots())
    for (size_t i = 0; i < tensors->size(); ++i) out.emplace_back(slot + "/" + names_[i], (*tensors)[i]);
  return out;
}

void Optimizer::set_learning_rate(float lr) {
  if (!(lr >= 0.0f) || !std::isfinite(lr)) fail("optimizer: learning rate must be a finite number >= 0, got ", lr);
  learning_rate_ = lr;
}

void Optimizer::set_weight_decay(float weight_decay) {
  if (!(weight_decay >= 0.0f) || !std::isfinite(weight_decay))
    fail("optimizer: weight decay must be a finite number >= 0, got ", weight_decay);
  weight_decay_ = weight_decay;
}

void Optimizer::decay_weights() {
  if (weight_decay_ == 0.0f) return;
  const float wd = weight_decay_, lr = learning_rate_;
  for (Tensor& p : parameters_) {
    if (!p.grad().defined()) continue;
    float* theta = p.data();
    // In Keras's order: variable − variable·wd·lr.
    for (int64_t k = 0, n = p.numel(); k < n; ++k) theta[k] -= theta[k] * wd * lr;
  }
}

Metadata Optimizer::base_config(const std::string& name) const {
  Metadata m{{"optimizer.name", name}, {"optimizer.learning_rate", exact_text(learning_rate_)}};
  if (weight_decay_ != 0.0f) m["optimizer.weight_decay"] = exact_text(weight_decay_);
  return m;
}

void Optimizer::zero_grad() {
  for (Tensor& p : parameters_) p.zero_grad();
}

void Optimizer::load_state(const std::map<std::string, Tensor>& saved) {
  const NamedTensors mine = state();
  std::set<std::string> names;
  for (const auto& [name, t] : mine) {
    names.insert(name);
    const auto it = saved.find(name);
    if (it == saved.end()) fail("optimizer state: '", name, "' ", t.shape().str(), " is missing");
    if (!(it->second.shape() == t.shape()))
      fail("optimizer state: '", name, "' has shape ", it->second.shape().str(), ", expected ", t.shape().str());
  }
  for (const auto& [name, t] : saved)
    if (!names.count(name)) fail("optimizer state: unexpected slot '", name, "'");
  for (const auto& [name, t] : mine) Tensor(t).copy_(saved.at(name));
}

Adam::Adam(std::vector<Tensor> parameters, AdamOptions options)
    : Optimizer(std::move(parameters), options.learning_rate), options_(options) {
  init();
}

Adam::Adam(const NamedTensors& parameters, AdamOptions options)
    : Optimizer(parameters, options.learning_rate), options_(options) {
  init();
}

void Adam::init() {
  const AdamOptions& options = options_;
  set_weight_decay(options.weight_decay);
  if (!(options.beta_1 >= 0.0f && options.beta_1 < 1.0f)) fail("Adam: beta_1 must be in [0, 1), got ", options.beta_1);
  if (!(options.beta_2 >= 0.0f && options.beta_2 < 1.0f)) fail("Adam: beta_2 must be in [0, 1), got ", options.beta_2);
  if (!(options.epsilon >= 0.0f)) fail("Adam: epsilon must be >= 0, got ", options.epsilon);
  m_ = zeros_like_each(parameters_);
  v_ = zeros_like_each(parameters_);
  if (options.amsgrad) v_hat_ = zeros_like_each(parameters_);
}

void Adam::step() {
  const NoGradGuard no_grad;
  decay_weights();
  const float t = static_cast<float>(iterations_ + 1);
  const float b1 = options_.beta_1, b2 = options_.beta_2, eps = options_.epsilon;
  // Bias correction folded into the step size, in float32 as Keras computes it.
  const float alpha = learning_rate_ * std::sqrt(1.0f - std::pow(b2, t)) / (1.0f - std::pow(b1, t));
  // Every parameter with a gradient, end to end: one parallel region splits the whole update evenly.
  std::vector<Segment>& segments = segments_;
  segments.clear();
  int64_t total = 0;
  for (size_t i = 0; i < parameters_.size(); ++i) {
    const Tensor grad = parameters_[i].grad();
    if (!grad.defined()) continue;
    segments.push_back({parameters_[i].data(), m_[i].data(), v_[i].data(), options_.amsgrad ? v_hat_[i].data() : nullptr,
                        grad.data(), total, parameters_[i].numel()});
    total += parameters_[i].numel();
  }
  const uint64_t threaded_products = internal::threaded_product_count();
  const bool spread = threaded_products != threaded_products_seen_;  // gradients written by several cores
  threaded_products_seen_ = threaded_products;
  internal::parallel_for(total, total >= kAdamParallelParameters || spread ? 1 : 0, [&](int64_t begin, int64_t end) {
    for (const Segment& s : segments) {
      const int64_t b = std::max(begin, s.begin) - s.begin, e = std::min(end, s.begin + s.n) - s.begin;
      if (b < e) adam_update(s.theta, s.g, s.m, s.v, s.v_max, b, e, alpha, b1, b2, eps);
    }
  });
  ++iterations_;
}

std::vector<std::pair<std::string, const std::vector<Tensor>*>> Adam::slots() const {
  return {{"m", &m_}, {"v", &v_}, {"v_hat", &v_hat_}};
}

Metadata Adam::config() const {
  Metadata m = base_config("adam");
  m["optimizer.beta_1"] = exact_text(options_.beta_1);
  m["optimizer.beta_2"] = exact_text(options_.beta_2);
  m["optimizer.epsilon"] = exact_text(options_.epsilon);
  m["optimizer.amsgrad"] = options_.amsgrad ? "1" : "0";
  return m;
}

AdamW::AdamW(const NamedTensors& parameters, AdamOptions options) : Adam(parameters, options) {}

Metadata AdamW::config() const {
  Metadata m = Adam::config();
  m["optimizer.name"] = "adamw";
  m["optimizer.weight_decay"] = exact_text(weight_decay_);
  return m;
}

SGD::SGD(std::vector<Tensor> parameters, SGDOptions options)
    : Optimizer(std::move(parameters), options.learning_rate), options_(options) {
  init();
}

SGD::SGD(const NamedTensors& parameters, SGDOptions options) : Optimizer(parameters, options.learning_rate), options_(options) {
  init();
}

void SGD::init() {
  if (!(options_.momentum >= 0.0f && options_.momentum <= 1.0f))
    fail("SGD: momentum must be in [0, 1], got ", options_.momentum);
  set_weight_decay(options_.weight_decay);
  if (options_.momentum > 0.0f) velocity_ = zeros_like_each(parameters_);
}

void SGD::step() {
  const NoGradGuard no_grad;
  decay_weights();
  const float lr = learning_rate_, mu = options_.momentum;
  for (size_t i = 0; i < parameters_.size(); ++i) {
    const Tensor grad = parameters_[i].grad();
    if (!grad.defined()) continue;
    float* theta = parameters_[i].data();
    const float* g = grad.data();
    const int64_t n = parameters_[i].numel();
    if (velocity_.empty()) {
      for (int64_t k = 0; k < n; ++k) theta[k] -= lr * g[k];
      continue;
    }
    float* vel = velocity_[i].data();
    for (int64_t k = 0; k < n; ++k) {
      vel[k] = mu * vel[k] - lr * g[k];
      theta[k] += options_.nesterov ? mu * vel[k] - lr * g[k] : vel[k];
    }
  }
  ++iterations_;
}

std::vector<std::pair<std::string, const std::vector<Tensor>*>> SGD::slots() const { return {{"velocity", &velocity_}}; }

Metadata SGD::config() const {
  Metadata m = base_config("sgd");
  m["optimizer.momentum"] = exact_text(options_.momentum);
  m["optimizer.nesterov"] = options_.nesterov ? "1" : "0";
  return m;
}

}  // namespace minidl
