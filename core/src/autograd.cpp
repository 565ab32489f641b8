// The autodiff engine: recording ops, topological ordering, backward, and freeing the graph.
#include "minidl/autograd.h"

#include <algorithm>
#include <atomic>
#include <unordered_set>

namespace minidl {
namespace {
thread_local bool t_grad_enabled = true;
std::atomic<int64_t> g_live_nodes{0};

std::shared_ptr<detail::TensorImpl> zeros_like(const detail::TensorImpl& t) {
  return Tensor::zeros(t.shape).impl_ptr();
}
}  // namespace

namespace detail {
Node::Node(const char* op_name, std::vector<std::shared_ptr<TensorImpl>> op_inputs, BackwardFn fn)
    : name(op_name), inputs(std::move(op_inputs)), backward(std::move(fn)) {
  ++g_live_nodes;
}
Node::~Node() { --g_live_nodes; }
}  // namespace detail

int64_t live_graph_nodes() { return g_live_nodes.load(); }

bool grad_enabled() { return t_grad_enabled; }
NoGradGuard::NoGradGuard() : previous_(t_grad_enabled) { t_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { t_grad_enabled = previous_; }

BackwardContext::BackwardContext(detail::Node& node, const Tensor& output, const Tensor& grad_output)
    : node_(node), output_(output), grad_output_(grad_output) {}

float* BackwardContext::grad(size_t i) {
  detail::TensorImpl& in = *node_.inputs[i];
  MINIDL_ASSERT(in.requires_grad);
  if (!in.grad) in.grad = zeros_like(in);
  return in.grad->storage->data;
}

float* BackwardContext::grad_for_write(size_t i, bool* fresh) {
  detail::TensorImpl& in = *node_.inputs[i];
  MINIDL_ASSERT(in.requires_grad);
  *fresh = !in.grad;
  if (*fresh) in.grad = Tensor::empty(in.shape).impl_ptr();
  return in.grad->storage->data;
}

Tensor record(Tensor output, const char* name, std::initializer_list<Tensor> inputs, BackwardFn backward) {
  if (!t_grad_enabled) return output;
  bool any = false;
  for (const Tensor& in : inputs) any = any || in.requires_grad();
  if (!any) return output;
  std::vector<std::shared_ptr<detail::TensorImpl>> impls;
  impls.reserve(inputs.size());
  for (const Tensor& in : inputs) impls.push_back(in.impl_ptr());
  detail::TensorImpl& out = output.impl();
  out.grad_fn = std::make_shared<detail::Node>(name, std::move(impls), std::move(backward));
  out.requires_grad = true;
  out.is_result = true;
  return output;
}

namespace {
using ImplPtr = std::shared_ptr<detail::TensorImpl>;

// Op results reachable from root, ordered so that every result comes after all results that consume it.
// Strong references: freeing a consumer's node must not free a result still waiting its turn.
std::vector<ImplPtr> reverse_topological_order(const ImplPtr& root) {
  std::vector<ImplPtr> post_order;
  std::unordered_set<detail::TensorImpl*> visited{root.get()};
  std::vector<std::pair<ImplPtr, size_t>> stack{{root, 0}};
  while (!stack.empty()) {
    auto& [impl, next] = stack.back();
    if (impl->grad_fn && next < impl->grad_fn->inputs.size()) {
      const ImplPtr& in = impl->grad_fn->inputs[next++];
      if (in->requires_grad && visited.insert(in.get()).second) stack.emplace_back(in, 0);
      continue;
    }
    if (impl->grad_fn)
      post_order.push_back(std::move(impl));
    else if (impl->is_result)
      fail("backward: the graph behind this tensor was freed by an earlier backward(); run the forward pass again");
    stack.pop_back();
  }
  std::reverse(post_order.begin(), post_order.end());
  return post_order;
}

void accumulate(detail::TensorImpl& target, const Tensor& g) {
  if (!target.grad) {
    target.grad = g.clone().impl_ptr();
    return;
  }
  float* dst = target.grad->storage->data;
  const float* src = g.data();
  for (int64_t i = 0, n = g.numel(); i < n; ++i) dst[i] += src[i];
}
}  // namespace

void Tensor::backward() const {
  if (numel() != 1)
    fail("backward: needs a one-element tensor or an explicit upstream gradient, got shape ", shape().str());
  backward(Tensor::ones(shape()));
}

void Tensor::backward(const Tensor& upstream) const {
  detail::TensorImpl& root = impl();
  if (!root.requires_grad)
    fail("backward: this tensor does not require grad (no parameter with requires_grad reaches it, or it was "
         "computed under NoGradGuard)");
  if (!(upstream.shape() == root.shape))
    fail("backward: upstream gradient shape ", upstream.shape().str(), " differs from the tensor's ",
         root.shape.str());
  const NoGradGuard no_grad;  // backward code never records
  std::vector<ImplPtr> order = reverse_topological_order(impl_ptr());
  accumulate(root, upstream);
  for (ImplPtr& impl : order) {
    // Take the node and the gradient out of the result: the graph is freed as backward walks it.
    const std::shared_ptr<detail::Node> node = std::move(impl->grad_fn);
    const ImplPtr g = std::move(impl->grad);
    if (g) {
      const Tensor output(impl), grad_output(g);
      BackwardContext ctx(*node, output, grad_output);
      node->backward(ctx);
    }
    impl.reset();
  }
}

}  // namespace minidl
