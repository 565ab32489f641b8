// Module: the base of every layer. Named parameters, buffers and submodules; train/eval; trainable; state.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "minidl/tensor.h"

namespace minidl {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

/// A layer or a model. Subclasses register what they own by name, so named state doubles as the checkpoint
/// format and buffers (non-trainable state such as moving statistics) never reach an optimizer.
class Module {
 public:
  explicit Module(std::string name) : name_(std::move(name)) {}
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  virtual Tensor forward(const Tensor& x) = 0;
  Tensor operator()(const Tensor& x) { return forward(x); }
  /// The output shape for an input shape (for summaries); throws when the input does not fit.
  virtual Shape output_shape(const Shape& input) const { return input; }
  /// The class name as Keras prints it ("Dense", "BatchNormalization").
  virtual std::string type_name() const = 0;
  /// Extra words for the summary, e.g. BatchNormalization's momentum convention.
  virtual std::string summary_note() const { return {}; }

  const std::string& name() const { return name_; }

  /// Trainable parameters (those an optimizer updates): empty for a module with trainable = false.
  std::vector<Tensor> parameters() const;
  /// Every parameter, trainable or not, named by path: "kernel", or "dense/kernel" from a container.
  NamedTensors named_parameters() const;
  std::vector<Tensor> buffers() const;
  NamedTensors named_buffers() const;
  /// Parameters then buffers, by name: what a checkpoint holds.
  NamedTensors state() const;
  /// Copies values from `state` into this module's tensors. Every tensor must be present with its shape
  /// (a missing or extra name or a shape mismatch throws, naming it) unless `strict` is false.
  void load_state(const std::map<std::string, Tensor>& state, bool strict = true);

  /// Training mode (batch statistics, moving updates) or inference mode; applies to submodules.
  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }
  /// Keras's layer.trainable: false freezes the parameters and makes BatchNormalization run in inference
  /// mode, even during training. Applies to submodules.
  void set_trainable(bool on);
  bool trainable() const { return trainable_; }
  /// Clears the gradients of all parameters.
  void zero_grad();

  const std::vector<std::shared_ptr<Module>>& children() const { return children_; }

 protected:
  Tensor& register_parameter(const std::string& name, Tensor t);
  Tensor& register_buffer(const std::string& name, Tensor t);
  template <class M>
  std::shared_ptr<M> register_module(std::shared_ptr<M> m) {
    children_.push_back(m);
    return m;
  }

 private:
  void collect(const std::string& prefix, bool params, bool only_trainable, NamedTensors& out) const;

  std::string name_;
  NamedTensors parameters_;
  NamedTensors buffers_;
  std::vector<std::shared_ptr<Module>> children_;
  bool training_ = true;
  bool trainable_ = true;
};

/// A unique layer name as Keras gives them: "dense", then "dense_1", "dense_2", ... per base name.
std::string unique_name(const std::string& base);
/// Resets the name counters (Keras's clear_session()).
void clear_session();

/// Layers applied in order. Its named state has no prefix of its own: "dense/kernel", as Keras names weights.
class Sequential : public Module {
 public:
  explicit Sequential(std::string name = unique_name("sequential")) : Module(std::move(name)) {}
  template <class M>
  std::shared_ptr<M> add(std::shared_ptr<M> layer) {
    return register_module(std::move(layer));
  }
  Tensor forward(const Tensor& x) override;
  Shape output_shape(const Shape& input) const override;
  std::string type_name() const override { return "Sequential"; }
  /// A table like Keras's model.summary(): layer (type), output shape, parameters; then the totals.
  std::string summary(const Shape& input_shape) const;
};

}  // namespace minidl
