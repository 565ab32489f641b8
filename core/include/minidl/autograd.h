// Reverse-mode autodiff: graph nodes, the backward context each op's backward receives, grad mode.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "minidl/tensor.h"

namespace minidl {

class BackwardContext;
/// An op's backward: reads the output gradient and accumulates (+=) into its inputs' gradients.
using BackwardFn = std::function<void(BackwardContext&)>;

namespace detail {
/// One recorded op. Holds its inputs (so their values live until backward) and its backward function.
/// The output owns the node and the node owns the inputs: edges point only backwards, so there are no cycles.
struct Node {
  Node(const char* op_name, std::vector<std::shared_ptr<TensorImpl>> op_inputs, BackwardFn fn);
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;
  const char* name;
  std::vector<std::shared_ptr<TensorImpl>> inputs;
  BackwardFn backward;
};
}  // namespace detail

/// What an op's backward sees: the output gradient, the forward output and inputs, and accumulators.
class BackwardContext {
 public:
  BackwardContext(detail::Node& node, const Tensor& output, const Tensor& grad_output);
  const Tensor& grad_output() const { return grad_output_; }
  const Tensor& output() const { return output_; }
  Tensor input(size_t i) const { return Tensor(node_.inputs[i]); }
  size_t num_inputs() const { return node_.inputs.size(); }
  bool needs_grad(size_t i) const { return node_.inputs[i]->requires_grad; }
  /// The gradient accumulator of input i (its shape, zero on first use): backward code adds into it.
  float* grad(size_t i);
  /// Like grad(i), but when this is the first contribution to input i's gradient the buffer is left
  /// uninitialised and *fresh is set: the caller must then WRITE every element instead of adding (saves a
  /// zero-fill and a read per buffer; the next contribution, e.g. from fan-out, adds as usual).
  float* grad_for_write(size_t i, bool* fresh);

 private:
  detail::Node& node_;
  const Tensor& output_;
  const Tensor& grad_output_;
};

/// True while ops record the graph (the default); NoGradGuard switches it off for this thread.
bool grad_enabled();

/// RAII: no graph is built while it lives (evaluation, optimizer updates, finite differences).
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

/// Records `output` as made by op `name` from `inputs`, if grad mode is on and any input requires grad.
/// Returns output. Every differentiable op ends with this, its backward written a few lines above.
Tensor record(Tensor output, const char* name, std::initializer_list<Tensor> inputs, BackwardFn backward);

/// Number of graph nodes alive in this process (tests use it to prove the graph is freed).
int64_t live_graph_nodes();

}  // namespace minidl
