// Module: the base of every layer. Named parameters, buffers, generators and submodules; train/eval;
// trainable; named state and loading it back; Sequential.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "minidl/random.h"
#include "minidl/tensor.h"

namespace minidl {

class OnnxGraph;

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;
using NamedGenerators = std::vector<std::pair<std::string, Generator*>>;

/// Checkpoint names under this prefix hold optimizer state, never a model's: load_state skips them, so a
/// training checkpoint loads into a model for inference as it is.
inline constexpr const char* kOptimizerStatePrefix = "optimizer/";

/// What a load_state call could not match.
struct LoadResult {
  std::vector<std::string> missing;     ///< the model's tensors absent from the state (left as they were)
  std::vector<std::string> unexpected;  ///< the state's tensors the model does not have (ignored)
  bool complete() const { return missing.empty() && unexpected.empty(); }
};

/// A layer or a model. Subclasses register what they own by name, so named state doubles as the checkpoint
/// format and buffers (non-trainable state such as moving statistics) never reach an optimizer.
///
/// Names come from the structure, per model: a module constructed without a name is named when its parent
/// registers it, Keras-style and counted within that parent ("dense", "dense_1", ...), so building the same
/// model twice gives the same tensor names.
class Module {
 public:
  explicit Module(std::string name = {}) : name_(std::move(name)) {}
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  virtual Tensor forward(const Tensor& x) = 0;
  /// forward(x), after the input observer (if one is set) has seen x. Containers call their layers this way.
  Tensor operator()(const Tensor& x) {
    if (input_observer_) input_observer_(x);
    return forward(x);
  }
  /// A function that sees the input of every call through operator() before the layer runs (PyTorch's forward
  /// pre-hook), e.g. to measure what reaches a layer inside a block; empty: none. It may throw to end the pass.
  void set_input_observer(std::function<void(const Tensor&)> observer) { input_observer_ = std::move(observer); }
  /// The output shape for an input shape (batch axis first); throws, naming the layer, when it does not fit.
  virtual Shape output_shape(const Shape& input) const { return input; }
  /// The class name as Keras prints it ("Dense", "BatchNormalization").
  virtual std::string type_name() const = 0;
  /// The base of the name a parent gives this module: type_name() in snake case, as Keras names layers
  /// ("Dense" → "dense", "ReLU" → "re_lu", "MaxPooling2D" → "max_pooling2d").
  virtual std::string default_name() const;
  /// Extra words for the summary, e.g. BatchNormalization's momentum convention.
  virtual std::string summary_note() const { return {}; }
  /// True for a container whose layers belong to its parent's namespace (Residual): when a parent registers it,
  /// the layers in it that have no explicit name are named among the parent's own, in order and before the
  /// container itself ("conv2d_3", ..., then "add"), and its state has no prefix of its own — the names of a
  /// Keras functional model, where every layer has one name in the model. Build the container before
  /// registering it. (A container used as the whole model names only its own layers: blocks nested in it keep
  /// theirs, which may repeat its own.)
  virtual bool names_flat() const { return false; }
  /// The smallest batch a training step can take for inputs shaped like `input` (its batch axis ignored): 2
  /// where a layer normalises with statistics over the batch axis alone (one sample would normalise to 0), else 1.
  virtual int64_t min_training_batch(const Shape& input) const;
  /// The smallest batch an inference-mode forward pass can take: 1, except for a layer that normalises every
  /// batch with its own statistics even in inference (manual mode's MomentsNormalization).
  virtual int64_t min_inference_batch(const Shape& input) const;
  /// Training-mode batches must be a multiple of this (ghost batch normalisation's virtual_batch_size), else 1.
  virtual int64_t training_batch_multiple() const;
  /// The smallest batch an inference-mode forward pass with batch statistics (use_batch_statistics) can take.
  virtual int64_t min_batch_statistics_batch(const Shape& input) const;

  /// FLOPs of the matrix products in a forward pass on `input` (2 per multiply-add), for benchmarks.
  virtual double product_flops(const Shape& input) const;
  /// Adds the layer's inference form to an ONNX graph, reading the value `input` of shape `input_shape`
  /// (batch axis first); returns the name of its output value. Throws for a layer that has no inference form.
  virtual std::string export_onnx(OnnxGraph& graph, const std::string& input, const Shape& input_shape) const;

  /// The explicit name, or default_name() while no parent has named the module.
  std::string name() const { return name_.empty() ? default_name() : name_; }

  /// Trainable parameters (those an optimizer updates): empty for a module with trainable = false.
  std::vector<Tensor> parameters() const;
  /// Parameters by path: "kernel", or "dense/kernel" from a container. With trainable_only, only those an
  /// optimizer updates (what parameters() returns), in the same order.
  NamedTensors named_parameters(bool trainable_only = false) const;
  std::vector<Tensor> buffers() const;
  NamedTensors named_buffers() const;
  /// Parameters then buffers, by name: what a checkpoint holds.
  NamedTensors state() const;
  /// The random generators the module draws from in training (dropout masks), by path: their states make
  /// a resumed run draw the same numbers.
  NamedGenerators named_generators() const;
  /// Adds to `state` what an older checkpoint of this layer lacks and can be derived from what it holds (renorm's
  /// moving_stddev from moving_variance); `prefix` is the layer's path ("batch_normalization/"). load_state calls it.
  virtual void complete_state(std::map<std::string, Tensor>& state, const std::string& prefix) const;
  /// Copies values from `state` into this module's tensors. Names under kOptimizerStatePrefix are ignored.
  /// strict: every tensor of the model must be present with its shape and the state must hold nothing else;
  /// the first difference throws, naming it. Not strict (partial loading): the tensors present are loaded,
  /// what was skipped is returned and sent to warn(); a load that matches nothing throws. A shape mismatch
  /// throws either way.
  LoadResult load_state(const std::map<std::string, Tensor>& state, bool strict = true);

  /// Training mode (batch statistics, moving updates, dropout) or inference mode; applies to submodules.
  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }
  /// In inference mode, normalisation layers that keep moving statistics normalise each batch with that batch's
  /// own statistics instead, updating nothing (PyTorch's track_running_stats = False); everything else, Dropout
  /// included, stays in inference mode. No effect in training mode. Applies to submodules.
  void use_batch_statistics(bool on = true);
  bool uses_batch_statistics() const { return batch_statistics_; }
  /// Called by the Trainer at the start of each epoch (1-based `epoch` of `epochs`), on every module: layers whose
  /// behaviour follows the schedule (frozen statistics for the last epochs) set themselves here.
  virtual void on_epoch_begin(int64_t epoch, int64_t epochs);
  /// Keras's layer.trainable: false freezes the parameters and makes BatchNormalization run in inference
  /// mode, even during training. Applies to submodules.
  void set_trainable(bool on);
  bool trainable() const { return trainable_; }
  /// Clears the gradients of all parameters.
  void zero_grad();

  const std::vector<std::shared_ptr<Module>>& children() const { return children_; }

 protected:
  /// Registers a parameter (requires_grad is set) and returns its handle. Handles share the tensor, so the
  /// returned one stays valid and sees every later load_state.
  Tensor register_parameter(const std::string& name, Tensor t);
  Tensor register_buffer(const std::string& name, Tensor t);
  /// Registers a generator the module owns (it must live as long as the module).
  void register_generator(const std::string& name, Generator* generator);
  /// Registers a submodule; an unnamed one gets the first free name of default_name(), default_name()_1, ...
  template <class M>
  std::shared_ptr<M> register_module(std::shared_ptr<M> m) {
    adopt(m, {});
    return m;
  }
  /// Registers a submodule under an explicit name (PyTorch's register_module("dense", m)).
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    adopt(m, name);
    return m;
  }

 private:
  void adopt(std::shared_ptr<Module> child, const std::string& name);
  /// The first free name of base, base_1, base_2, ... among this module's children.
  std::string free_name(const std::string& base);
  /// Names the layers under a names_flat() container among this module's children (the container's own name
  /// is the caller's to give).
  void name_flat_layers(Module& container);
  /// The path prefix of a child's state: "name/", or nothing for a names_flat() container.
  static std::string prefix_of(const Module& child);
  void check_new_name(const std::string& name) const;
  void collect(const std::string& prefix, bool params, bool only_trainable, NamedTensors& out) const;
  void collect_generators(const std::string& prefix, NamedGenerators& out) const;
  void complete_tree(std::map<std::string, Tensor>& state, const std::string& prefix) const;

  std::string name_;
  NamedTensors parameters_;
  NamedTensors buffers_;
  NamedGenerators generators_;
  std::vector<std::shared_ptr<Module>> children_;
  std::set<std::string> taken_names_;             // every parameter, buffer and child name, for check_new_name
  std::set<std::string> child_names_;             // the children's, among which automatic names must be free
  std::map<std::string, int64_t> next_suffix_;    // per default name, the lowest suffix that may be free
  bool training_ = true;
  bool trainable_ = true;
  bool batch_statistics_ = false;
  bool auto_named_ = false;  // named by a parent's counter (so a names_flat() container's parent may rename it)
  std::function<void(const Tensor&)> input_observer_;
};

/// Layers applied in order. Its named state has no prefix of its own: "dense/kernel", as Keras names weights.
class Sequential : public Module {
 public:
  explicit Sequential(std::string name = {}) : Module(std::move(name)) {}
  template <class M>
  std::shared_ptr<M> add(std::shared_ptr<M> layer) {
    return register_module(std::move(layer));
  }
  template <class M>
  std::shared_ptr<M> add(const std::string& name, std::shared_ptr<M> layer) {
    return register_module(name, std::move(layer));
  }
  /// Declares the shape of one sample (no batch axis), like Keras's Input(shape=...). Inputs with that many
  /// values per sample are then accepted in any shape and viewed as [batch, ...shape] (no copy): a batch of
  /// flat pixels [B, 784] feeds a convolutional model declared with [28, 28, 1], and the reverse.
  void set_input_shape(const Shape& sample);
  /// The declared sample shape; rank 0 when none was declared.
  const Shape& input_shape() const { return input_shape_; }
  Tensor forward(const Tensor& x) override;
  Shape output_shape(const Shape& input) const override;
  int64_t min_training_batch(const Shape& input) const override;
  int64_t min_inference_batch(const Shape& input) const override;
  int64_t min_batch_statistics_batch(const Shape& input) const override;
  /// The least common multiple of the layers'.
  int64_t training_batch_multiple() const override;
  double product_flops(const Shape& input) const override;
  /// FLOPs of the matrix products in a training step on `input`: forward, and backward to the weights and to
  /// every layer's input but the first's (the data needs no gradient).
  double training_product_flops(const Shape& input) const;
  std::string type_name() const override { return "Sequential"; }
  /// A table like Keras's model.summary(): layer (type), output shape, parameters; then the totals.
  std::string summary(const Shape& input_shape) const;
  /// The same for the declared input shape (batch 1, shown as None).
  std::string summary() const;

 private:
  /// `input` viewed as [batch, ...input_shape_] when a shape is declared (throws when the sizes differ).
  Shape declared(const Shape& input) const;
  /// The largest of a per-layer batch requirement, each layer asked with the shape that reaches it.
  int64_t largest_over_layers(const Shape& input, int64_t (Module::*needed_by)(const Shape&) const) const;
  Shape input_shape_;
};

/// Calls f on every module of type M in the tree under `model` (the model itself included), depth first; returns
/// how many there are.
template <class M, class F>
int for_each_module(Module& model, F&& f) {
  int count = 0;
  if (auto* m = dynamic_cast<M*>(&model)) f(*m), ++count;
  for (const auto& child : model.children()) count += for_each_module<M>(*child, f);
  return count;
}

}  // namespace minidl
