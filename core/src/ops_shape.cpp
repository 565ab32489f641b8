// Shape ops: reshape (shares storage) and transpose of two axes (copies).
#include <utility>

#include "minidl/autograd.h"
#include "minidl/internal/broadcast.h"
#include "minidl/ops.h"

namespace minidl {

Tensor reshape(const Tensor& x, std::span<const int64_t> dims) {
  const auto wanted = [&] {
    std::string s = "[";
    for (size_t i = 0; i < dims.size(); ++i) {
      if (i) s += ',';
      s += std::to_string(dims[i]);
    }
    return s + "]";
  };
  if (dims.size() > static_cast<size_t>(kMaxRank)) fail("reshape: rank ", dims.size(), " exceeds ", kMaxRank);
  int inferred = -1;
  int64_t known = 1;
  for (size_t axis = 0; axis < dims.size(); ++axis) {
    if (dims[axis] == -1 && inferred < 0) inferred = static_cast<int>(axis);
    else if (dims[axis] < 0) fail("reshape: bad target shape ", wanted(), " (at most one -1, no other negatives)");
    else known *= dims[axis];
  }
  Shape target;
  for (size_t axis = 0; axis < dims.size(); ++axis)
    target.push_back(static_cast<int>(axis) == inferred ? (known ? x.numel() / known : 0) : dims[axis]);
  if (target.numel() != x.numel())
    fail("reshape: cannot reshape ", x.shape().str(), " (", x.numel(), " values) into ", wanted());
  Tensor out(std::make_shared<detail::TensorImpl>());
  out.impl().shape = target;
  out.impl().storage = x.impl().storage;
  return record(out, "reshape", {x}, [](BackwardContext& c) {
    const float* g = c.grad_output().data();
    float* gx = c.grad(0);
    for (int64_t i = 0, n = c.output().numel(); i < n; ++i) gx[i] += g[i];
  });
}

namespace {
// A loop over the transposed output (o) paired with the offset of the same element in the input (a).
internal::Broadcast swap_plan(const Shape& in, int i, int j) {
  internal::Broadcast plan;
  plan.out = in;
  std::swap(plan.out[i], plan.out[j]);
  plan.stride_a = internal::strides_of(in);
  std::swap(plan.stride_a[i], plan.stride_a[j]);
  return plan;
}
}  // namespace

Tensor reshape(const Tensor& x, std::initializer_list<int64_t> dims) {
  return reshape(x, std::span<const int64_t>(dims.begin(), dims.size()));
}

Tensor reshape(const Tensor& x, const Shape& shape) {
  return reshape(x, std::span<const int64_t>(shape.begin(), shape.end()));
}

Tensor transpose(const Tensor& x, int axis0, int axis1) {
  const int rank = x.dim();
  const int i = axis0 < 0 ? axis0 + rank : axis0, j = axis1 < 0 ? axis1 + rank : axis1;
  if (i < 0 || i >= rank || j < 0 || j >= rank)
    fail("transpose: axes ", axis0, " and ", axis1, " are out of range for shape ", x.shape().str());
  const internal::Broadcast plan = swap_plan(x.shape(), i, j);
  Tensor out = Tensor::empty(plan.out);
  const float* px = x.data();
  float* po = out.data();
  internal::for_each_broadcast(plan, [&](int64_t o, int64_t ix, int64_t) { po[o] = px[ix]; });
  return record(out, "transpose", {x}, [i, j](BackwardContext& c) {
    // Each input element receives the gradient of the output element it was copied to.
    const internal::Broadcast plan = swap_plan(c.input(0).shape(), i, j);
    const float* g = c.grad_output().data();
    float* gx = c.grad(0);
    internal::for_each_broadcast(plan, [&](int64_t o, int64_t ix, int64_t) { gx[ix] += g[o]; });
  });
}

}  // namespace minidl
