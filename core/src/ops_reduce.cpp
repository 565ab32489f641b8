// Reductions: sum and mean over all axes or a set of axes, with keepdims.
#include <algorithm>

#include "minidl/autograd.h"
#include "minidl/internal/broadcast.h"
#include "minidl/ops.h"

namespace minidl {
namespace {
using internal::Broadcast;

// Bit `axis` set for each reduced axis. Empty axes = all. Rejects axes out of range and repeats.
unsigned reduced_axes(const char* op, const Shape& s, const std::vector<int>& axes) {
  if (axes.empty()) return (1u << s.rank()) - 1;
  unsigned mask = 0;
  for (int axis : axes) {
    const int a = axis < 0 ? axis + s.rank() : axis;
    if (a < 0 || a >= s.rank()) fail(op, ": axis ", axis, " is out of range for shape ", s.str());
    if (mask & (1u << a)) fail(op, ": axis ", axis, " is repeated");
    mask |= 1u << a;
  }
  return mask;
}

// The input's shape with reduced axes set to 1 (keepdims) and a loop plan pairing input offsets (a) with
// output offsets (b: stride 0 along reduced axes).
Broadcast reduce_plan(const Shape& in, unsigned mask, Shape* keep_shape) {
  Shape keep;
  for (int axis = 0; axis < in.rank(); ++axis) keep.push_back((mask >> axis) & 1u ? 1 : in[axis]);
  Broadcast bc;
  bc.out = in;
  bc.stride_a = internal::strides_of(in);
  bc.stride_b = internal::strides_of(keep);
  for (int axis = 0; axis < in.rank(); ++axis)
    if ((mask >> axis) & 1u) bc.stride_b[axis] = 0;
  if (keep_shape) *keep_shape = keep;
  return bc;
}

// Reduced axes that form one block [first, last] let the input be read as [outer, R, inner] rows, summed in
// double in blocks of columns: contiguous reads and little rounding error even for 60,000 rows.
bool contiguous_block(const Shape& s, unsigned mask, int64_t* outer, int64_t* reduced, int64_t* inner) {
  int first = -1, last = -1;
  for (int axis = 0; axis < s.rank(); ++axis)
    if ((mask >> axis) & 1u) {
      if (first < 0) first = axis;
      else if (last != axis - 1) return false;
      last = axis;
    }
  *outer = *reduced = *inner = 1;
  for (int axis = 0; axis < s.rank(); ++axis)
    (axis < first ? *outer : axis > last ? *inner : *reduced) *= s[axis];
  return true;
}

Tensor reduce(const char* op, const Tensor& x, const std::vector<int>& axes, bool keepdims, bool average) {
  const Shape& in = x.shape();
  const unsigned mask = reduced_axes(op, in, axes);
  Shape keep;
  const Broadcast bc = reduce_plan(in, mask, &keep);
  Shape out_shape;
  for (int axis = 0; axis < in.rank(); ++axis)
    if (keepdims || !((mask >> axis) & 1u)) out_shape.push_back(keep[axis]);
  const int64_t count = in.numel() / std::max<int64_t>(keep.numel(), 1);
  const float scale = average ? 1.0f / static_cast<float>(std::max<int64_t>(count, 1)) : 1.0f;

  Tensor out = Tensor::zeros(out_shape);
  const float* px = x.data();
  float* po = out.data();
  int64_t outer, rows, inner;
  if (contiguous_block(in, mask, &outer, &rows, &inner)) {
    constexpr int64_t kBlock = 256;
    double acc[kBlock];
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t c0 = 0; c0 < inner; c0 += kBlock) {
        const int64_t width = std::min(kBlock, inner - c0);
        std::fill_n(acc, width, 0.0);
        for (int64_t r = 0; r < rows; ++r) {
          const float* row = px + (o * rows + r) * inner + c0;
          for (int64_t j = 0; j < width; ++j) acc[j] += row[j];
        }
        for (int64_t j = 0; j < width; ++j) po[o * inner + c0 + j] = static_cast<float>(acc[j] * scale);
      }
  } else {
    internal::for_each_broadcast(bc, [&](int64_t i, int64_t, int64_t o) { po[o] += px[i]; });
    for (float& v : out.values()) v *= scale;
  }

  return record(out, op, {x}, [mask, scale](BackwardContext& c) {
    // Each input element receives the gradient of the output element it was summed into, times scale.
    const Broadcast bc = reduce_plan(c.input(0).shape(), mask, nullptr);
    const float* g = c.grad_output().data();
    float* gx = c.grad(0);
    internal::for_each_broadcast(bc, [&](int64_t i, int64_t, int64_t o) { gx[i] += g[o] * scale; });
  });
}
}  // namespace

Tensor sum(const Tensor& x, std::vector<int> axes, bool keepdims) { return reduce("sum", x, axes, keepdims, false); }
Tensor mean(const Tensor& x, std::vector<int> axes, bool keepdims) { return reduce("mean", x, axes, keepdims, true); }

}  // namespace minidl
