// Optimizers over parameter handles: Adam and SGD with Keras's defaults and exact update rules (spec §3).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "minidl/module.h"
#include "minidl/tensor.h"

namespace minidl {

/// Base of the optimizers: the parameters (by handle), per-parameter state by index, the learning rate and
/// the step count. Parameters without a gradient are skipped by step().
class Optimizer {
 public:
  Optimizer(std::vector<Tensor> parameters, float learning_rate);
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

  /// Slot tensors by name, e.g. "m/0", "v/0" for parameter 0 (the step count is iterations()).
  virtual NamedTensors state() const = 0;
  /// Restores slots saved by state(); names and shapes must match (throws otherwise).
  void load_state(const std::map<std::string, Tensor>& state);

 protected:
  std::vector<Tensor> parameters_;
  float learning_rate_;
  int64_t iterations_ = 0;
};

struct AdamOptions {
  float learning_rate = 1e-3f;
  float beta_1 = 0.9f;
  float beta_2 = 0.999f;
  float epsilon = 1e-7f;  ///< Keras: added to sqrt of the UNcorrected v (PyTorch: 1e-8, to the corrected).
  bool amsgrad = false;
};

/// Keras Adam (spec §3): with t = iterations + 1,
///   alpha = lr·sqrt(1 − β₂ᵗ)/(1 − β₁ᵗ);  m += (g − m)(1 − β₁);  v += (g² − v)(1 − β₂);
///   θ −= alpha·m/(sqrt(v) + ε)   (v replaced by the running max of v with amsgrad).
class Adam : public Optimizer {
 public:
  explicit Adam(std::vector<Tensor> parameters, AdamOptions options = {});
  void step() override;
  NamedTensors state() const override;
  const AdamOptions& options() const { return options_; }

 private:
  AdamOptions options_;
  std::vector<Tensor> m_, v_, v_hat_;
};

struct SGDOptions {
  float learning_rate = 0.01f;
  float momentum = 0.0f;
  bool nesterov = false;
};

/// Keras SGD: velocity = momentum·velocity − lr·g; θ += velocity, or with Nesterov θ += momentum·velocity − lr·g.
/// Without momentum: θ −= lr·g.
class SGD : public Optimizer {
 public:
  explicit SGD(std::vector<Tensor> parameters, SGDOptions options = {});
  void step() override;
  NamedTensors state() const override;

 private:
  SGDOptions options_;
  std::vector<Tensor> velocity_;
};

}  // namespace minidl
