// Optimizers over parameter handles: Adam and SGD with Keras's defaults and exact update rules
// (docs/keras.md §3). Per-parameter state is named after the parameter, so checkpoints survive reordering.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "minidl/metadata.h"
#include "minidl/module.h"
#include "minidl/tensor.h"

namespace minidl {

/// Base of the optimizers: the parameters (by handle) and their names, per-parameter slots, the learning rate
/// and the step count. Parameters without a gradient are skipped by step().
class Optimizer {
 public:
  /// Parameters named "0", "1", ... by position until name_parameters() names them.
  Optimizer(std::vector<Tensor> parameters, float learning_rate);
  /// Parameters with their names, e.g. model.named_parameters(true).
  Optimizer(const NamedTensors& parameters, float learning_rate);
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  /// Clears the gradients of every parameter.
  void zero_grad();
  /// One update from the accumulated gradients; then iterations() grows by one.
  virtual void step() = 0;

  float learning_rate() const { return learning_rate_; }
  void set_learning_rate(float lr);
  int64_t iterations() const { return iterations_; }
  void set_iterations(int64_t n) { iterations_ = n; }
  const std::vector<Tensor>& parameters() const { return parameters_; }
  const std::vector<std::string>& parameter_names() const { return names_; }
  /// Names each parameter after the entry of `named` holding the same tensor (pass model.named_parameters()):
  /// slots are then saved as "m/dense/kernel". Throws when a parameter is not among them.
  void name_parameters(const NamedTensors& named);

  /// Slot tensors by "<slot>/<parameter name>", e.g. "m/dense/kernel" (the step count is iterations()).
  NamedTensors state() const;
  /// Restores slots saved by state(); names and shapes must match (throws otherwise).
  void load_state(const std::map<std::string, Tensor>& state);
  /// The optimizer's kind and hyperparameters as checkpoint metadata: "optimizer.name" and the rest.
  virtual Metadata config() const = 0;
  /// Keras's weight_decay, decoupled from the gradient: each step first shrinks every parameter that has a
  /// gradient, θ −= θ·weight_decay·learning_rate, then applies the update. 0 (the default) turns it off.
  float weight_decay() const { return weight_decay_; }
  void set_weight_decay(float weight_decay);

 protected:
  /// Each slot's name and its tensors, one per parameter.
  virtual std::vector<std::pair<std::string, const std::vector<Tensor>*>> slots() const = 0;
  /// The weight decay step, for step() to call first.
  void decay_weights();
  /// config()'s keys every optimizer shares: its name, learning rate and weight decay.
  Metadata base_config(const std::string& name) const;

  std::vector<Tensor> parameters_;
  std::vector<std::string> names_;
  float learning_rate_;
  float weight_decay_ = 0.0f;
  int64_t iterations_ = 0;
};

struct AdamOptions {
  float learning_rate = 1e-3f;
  float beta_1 = 0.9f;
  float beta_2 = 0.999f;
  float epsilon = 1e-7f;  ///< Keras: added to sqrt of the UNcorrected v (PyTorch: 1e-8, to the corrected).
  bool amsgrad = false;
  float weight_decay = 0.0f;  ///< decoupled (Optimizer::weight_decay); AdamW's default is 0.004
};

/// Keras Adam (docs/keras.md §3): with t = iterations + 1,
///   alpha = lr·sqrt(1 − β₂ᵗ)/(1 − β₁ᵗ);  m += (g − m)(1 − β₁);  v += (g² − v)(1 − β₂);
///   θ −= alpha·m/(sqrt(v) + ε)   (v replaced by the running max of v with amsgrad).
class Adam : public Optimizer {
 public:
  explicit Adam(std::vector<Tensor> parameters, AdamOptions options = {});
  explicit Adam(const NamedTensors& parameters, AdamOptions options = {});
  void step() override;
  Metadata config() const override;
  const AdamOptions& options() const { return options_; }

 protected:
  std::vector<std::pair<std::string, const std::vector<Tensor>*>> slots() const override;

 private:
  void init();
  /// One parameter's part of the single pass over all of them: its arrays and where it starts in the concatenation.
  struct Segment {
    float *theta, *m, *v, *v_max;
    const float* g;
    int64_t begin, n;
  };
  AdamOptions options_;
  std::vector<Tensor> m_, v_, v_hat_;
  std::vector<Segment> segments_;  // reused every step
  uint64_t threaded_products_seen_ = 0;  // internal::threaded_product_count() at the last step
};

/// Keras AdamW's default weight decay.
inline constexpr float kAdamWWeightDecay = 0.004f;

/// Keras AdamW: Adam with decoupled weight decay, kAdamWWeightDecay by default; config() names it "adamw".
class AdamW : public Adam {
 public:
  explicit AdamW(const NamedTensors& parameters, AdamOptions options = {.weight_decay = kAdamWWeightDecay});
  Metadata config() const override;
};

struct SGDOptions {
  float learning_rate = 0.01f;
  float momentum = 0.0f;  ///< in [0, 1]
  bool nesterov = false;
  float weight_decay = 0.0f;  ///< decoupled (Optimizer::weight_decay)
};

/// Keras SGD: velocity = momentum·velocity − lr·g; θ += velocity, or with Nesterov θ += momentum·velocity − lr·g.
/// Without momentum: θ −= lr·g.
class SGD : public Optimizer {
 public:
  explicit SGD(std::vector<Tensor> parameters, SGDOptions options = {});
  explicit SGD(const NamedTensors& parameters, SGDOptions options = {});
  void step() override;
  Metadata config() const override;

 protected:
  std::vector<std::pair<std::string, const std::vector<Tensor>*>> slots() const override;

 private:
  void init();
  SGDOptions options_;
  std::vector<Tensor> velocity_;
};

}  // namespace minidl
