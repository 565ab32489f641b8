// Elementwise ops: binary with broadcasting (add, sub, mul, div, maximum) and unary (exp, log, relu, ...).
#include <cmath>

#include "minidl/autograd.h"
#include "minidl/gradcheck.h"
#include "minidl/internal/broadcast.h"
#include "minidl/internal/parallel.h"
#include "minidl/ops.h"

namespace minidl {
namespace internal {

std::array<int64_t, kMaxRank> strides_of(const Shape& s) {
  std::array<int64_t, kMaxRank> strides{};
  int64_t stride = 1;
  for (int axis = s.rank() - 1; axis >= 0; --axis) {
    strides[axis] = stride;
    stride *= s[axis];
  }
  return strides;
}

Broadcast broadcast(const char* op, const Shape& a, const Shape& b) {
  Broadcast bc;
  const int rank = std::max(a.rank(), b.rank());
  const auto sa = strides_of(a), sb = strides_of(b);
  for (int axis = 0; axis < rank; ++axis) {
    // Align from the right: axis `axis` of the output is axis (axis - rank + r) of an operand of rank r.
    const int ia = axis - rank + a.rank(), ib = axis - rank + b.rank();
    const int64_t da = ia >= 0 ? a[ia] : 1, db = ib >= 0 ? b[ib] : 1;
    if (da != db && da != 1 && db != 1) fail(op, ": shapes do not broadcast: ", a.str(), " x ", b.str());
    const int64_t d = da == 1 ? db : da;
    bc.out.push_back(d);
    bc.stride_a[axis] = (ia >= 0 && da == d && d != 1) ? sa[ia] : 0;
    bc.stride_b[axis] = (ib >= 0 && db == d && d != 1) ? sb[ib] : 0;
  }
  return bc;
}

}  // namespace internal

namespace {
using internal::for_each_broadcast;

// f(a, b) elementwise with broadcasting; da(a, b) and db(a, b) are its partial derivatives.
template <class F, class DA, class DB>
Tensor binary(const char* name, const Tensor& a, const Tensor& b, F f, DA da, DB db) {
  const internal::Broadcast bc = internal::broadcast(name, a.shape(), b.shape());
  Tensor out = Tensor::empty(bc.out);
  const float *pa = a.data(), *pb = b.data();
  float* po = out.data();
  if (a.shape() == b.shape()) {
    internal::parallel_for(out.numel(), 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) po[i] = f(pa[i], pb[i]);
    });
  } else {
    for_each_broadcast(bc, [&](int64_t o, int64_t ia, int64_t ib) { po[o] = f(pa[ia], pb[ib]); });
  }
  return record(out, name, {a, b}, [name, da, db](BackwardContext& c) {
    // d out / d a = da(a, b), summed over the axes along which a was broadcast (likewise for b).
    const Tensor a = c.input(0), b = c.input(1);
    const float *g = c.grad_output().data(), *pa = a.data(), *pb = b.data();
    const internal::Broadcast bc = internal::broadcast(name, a.shape(), b.shape());
    if (a.shape() == b.shape()) {
      float* ga = c.needs_grad(0) ? c.grad(0) : nullptr;
      float* gb = c.needs_grad(1) ? c.grad(1) : nullptr;
      internal::parallel_for(c.output().numel(), 2, [&](int64_t begin, int64_t end) {
        if (ga)
          for (int64_t i = begin; i < end; ++i) ga[i] += g[i] * da(pa[i], pb[i]);
        if (gb)
          for (int64_t i = begin; i < end; ++i) gb[i] += g[i] * db(pa[i], pb[i]);
      });
      return;
    }
    if (c.needs_grad(0)) {
      float* ga = c.grad(0);
      for_each_broadcast(bc, [&](int64_t o, int64_t ia, int64_t ib) { ga[ia] += g[o] * da(pa[ia], pb[ib]); });
    }
    if (c.needs_grad(1)) {
      float* gb = c.grad(1);
      for_each_broadcast(bc, [&](int64_t o, int64_t ia, int64_t ib) { gb[ib] += g[o] * db(pa[ia], pb[ib]); });
    }
  });
}

// out[i] = f(in[i]) and gx[i] += g[i]·df(x[i], y[i]) over [begin, end), with __restrict pointer parameters so
// the loops vectorise inside parallel_for's lambdas.
template <class F>
void map_range(const float* __restrict in, float* __restrict out, int64_t begin, int64_t end, F f) {
  for (int64_t i = begin; i < end; ++i) out[i] = f(in[i]);
}
template <bool kFresh, class DF>
void chain_range(const float* __restrict g, const float* __restrict x, const float* __restrict y,
                 float* __restrict gx, int64_t begin, int64_t end, DF df) {
  for (int64_t i = begin; i < end; ++i) gx[i] = (kFresh ? 0.0f : gx[i]) + g[i] * df(x[i], y[i]);
}

// y = f(x) elementwise; df(x, y) is dy/dx (given y too, so exp and sqrt reuse their output).
template <class F, class DF>
Tensor unary(const char* name, const Tensor& x, F f, DF df) {
  Tensor out = Tensor::empty(x.shape());
  const float* px = x.data();
  float* py = out.data();
  internal::parallel_for(x.numel(), 1, [&](int64_t begin, int64_t end) { map_range(px, py, begin, end, f); });
  return record(out, name, {x}, [df](BackwardContext& c) {
    const float *g = c.grad_output().data(), *px = c.input(0).data(), *py = c.output().data();
    bool fresh = false;
    float* gx = c.grad_for_write(0, &fresh);
    internal::parallel_for(c.output().numel(), 1, [&](int64_t begin, int64_t end) {
      if (fresh) chain_range<true>(g, px, py, gx, begin, end, df);
      else chain_range<false>(g, px, py, gx, begin, end, df);
    });
  });
}

// 1 / (1 + e^−v), taking exp of a non-positive number only: e^v / (1 + e^v) below 0.
float stable_sigmoid(float v) {
  if (v >= 0.0f) return 1.0f / (1.0f + std::exp(-v));
  const float e = std::exp(v);
  return e / (1.0f + e);
}

}  // namespace

// Under a watching gradcheck, a kinked op records which branch each output element takes, and replays those
// branches in the perturbed evaluations: out[i] = pick(i, branch[i]). Returns true when it has replayed.
template <class Branch, class Pick>
bool replay_branches(const Tensor& out, Branch branch, Pick pick) {
  detail::KinkWatch* watch = detail::kink_watch();
  if (!watch) return false;
  const std::vector<uint32_t>& b = watch->branches(out.numel(), branch);
  if (!watch->replaying()) return false;
  float* po = const_cast<Tensor&>(out).data();
  for (int64_t i = 0, n = out.numel(); i < n; ++i) po[i] = pick(i, b[static_cast<size_t>(i)]);
  return true;
}

Tensor add(const Tensor& a, const Tensor& b) {
  return binary(
      "add", a, b, [](float x, float y) { return x + y; }, [](float, float) { return 1.0f; },
      [](float, float) { return 1.0f; });
}

Tensor sub(const Tensor& a, const Tensor& b) {
  return binary(
      "sub", a, b, [](float x, float y) { return x - y; }, [](float, float) { return 1.0f; },
      [](float, float) { return -1.0f; });
}

Tensor mul(const Tensor& a, const Tensor& b) {
  return binary(
      "mul", a, b, [](float x, float y) { return x * y; }, [](float, float y) { return y; },
      [](float x, float) { return x; });
}

Tensor div(const Tensor& a, const Tensor& b) {
  return binary(
      "div", a, b, [](float x, float y) { return x / y; }, [](float, float y) { return 1.0f / y; },
      [](float x, float y) { return -x / (y * y); });
}

Tensor maximum(const Tensor& a, const Tensor& b) {
  Tensor out = binary(
      "maximum", a, b, [](float x, float y) { return x >= y ? x : y; },
      [](float x, float y) { return x >= y ? 1.0f : 0.0f; }, [](float x, float y) { return x >= y ? 0.0f : 1.0f; });
  if (detail::kink_watch()) {
    // Which operand each output came from, by output index.
    const internal::Broadcast bc = internal::broadcast("maximum", a.shape(), b.shape());
    std::vector<int64_t> from_a(static_cast<size_t>(out.numel())), from_b(from_a.size());
    internal::for_each_broadcast(bc, [&](int64_t o, int64_t ia, int64_t ib) { from_a[o] = ia, from_b[o] = ib; });
    replay_branches(
        out, [&](int64_t o) { return a.data()[from_a[o]] >= b.data()[from_b[o]] ? 1u : 0u; },
        [&](int64_t o, uint32_t takes_a) { return takes_a ? a.data()[from_a[o]] : b.data()[from_b[o]]; });
  }
  return out;
}

Tensor neg(const Tensor& x) {
  return unary("neg", x, [](float v) { return -v; }, [](float, float) { return -1.0f; });
}

Tensor exp(const Tensor& x) {
  return unary("exp", x, [](float v) { return std::exp(v); }, [](float, float y) { return y; });
}

Tensor log(const Tensor& x) {
  return unary("log", x, [](float v) { return std::log(v); }, [](float v, float) { return 1.0f / v; });
}

Tensor sqrt(const Tensor& x) {
  return unary("sqrt", x, [](float v) { return std::sqrt(v); }, [](float, float y) { return 0.5f / y; });
}

Tensor rsqrt(const Tensor& x) {
  // y = x^(-1/2), dy/dx = -1/2 x^(-3/2) = -1/2 y^3
  return unary(
      "rsqrt", x, [](float v) { return 1.0f / std::sqrt(v); }, [](float, float y) { return -0.5f * y * y * y; });
}

Tensor square(const Tensor& x) {
  return unary("square", x, [](float v) { return v * v; }, [](float v, float) { return 2.0f * v; });
}

Tensor pow(const Tensor& x, float exponent) {
  return unary(
      "pow", x, [exponent](float v) { return std::pow(v, exponent); },
      [exponent](float v, float) { return exponent * std::pow(v, exponent - 1.0f); });
}

Tensor relu(const Tensor& x) {
  // NaN propagates (as PyTorch's relu): a NaN weight must not hide behind a finite, normal-looking loss.
  Tensor out = unary(
      "relu", x, [](float v) { return v > 0.0f || v != v ? v : 0.0f; },
      [](float v, float) { return v > 0.0f ? 1.0f : 0.0f; });
  const float* px = x.data();
  replay_branches(
      out, [&](int64_t i) { return px[i] > 0.0f ? 1u : 0u; },
      [&](int64_t i, uint32_t positive) { return positive ? px[i] : 0.0f; });
  return out;
}

Tensor abs(const Tensor& x) {
  Tensor out = unary(
      "abs", x, [](float v) { return std::fabs(v); },
      [](float v, float) { return v > 0.0f ? 1.0f : v < 0.0f ? -1.0f : 0.0f; });
  const float* px = x.data();
  replay_branches(
      out, [&](int64_t i) { return px[i] < 0.0f ? 1u : 0u; },
      [&](int64_t i, uint32_t negative) { return negative ? -px[i] : px[i]; });
  return out;
}

Tensor sigmoid(const Tensor& x) {
  Tensor out = unary("sigmoid", x, stable_sigmoid, [](float, float y) { return y * (1.0f - y); });
  out.impl().sigmoid_logits = x.impl_ptr();
  return out;
}

Tensor tanh(const Tensor& x) {
  return unary("tanh", x, [](float v) { return std::tanh(v); }, [](float, float y) { return 1.0f - y * y; });
}

Tensor gelu(const Tensor& x) {
  constexpr float kInvSqrt2 = 0.70710678118654752f, kInvSqrt2Pi = 0.39894228040143268f;
  return unary(
      "gelu", x, [](float v) { return 0.5f * v * (1.0f + std::erf(v * kInvSqrt2)); },
      [](float v, float) { return 0.5f * (1.0f + std::erf(v * kInvSqrt2)) + v * kInvSqrt2Pi * std::exp(-0.5f * v * v); });
}

Tensor silu(const Tensor& x) {
  return unary(
      "silu", x, [](float v) { return v * stable_sigmoid(v); },
      [](float v, float) {
        const float s = stable_sigmoid(v);
        return s * (1.0f + v * (1.0f - s));
      });
}

Tensor leaky_relu(const Tensor& x, float alpha) {
  if (!(alpha >= 0.0f) || !std::isfinite(alpha)) fail("leaky_relu: alpha must be finite and >= 0, got ", alpha);
  Tensor out = unary(
      "leaky_relu", x, [alpha](float v) { return v > 0.0f || v != v ? v : alpha * v; },
      [alpha](float v, float) { return v > 0.0f ? 1.0f : alpha; });
  const float* px = x.data();
  replay_branches(
      out, [&](int64_t i) { return px[i] > 0.0f ? 1u : 0u; },
      [&](int64_t i, uint32_t positive) { return positive ? px[i] : alpha * px[i]; });
  return out;
}

Tensor clip(const Tensor& x, float lo, float hi) {
  if (!(lo <= hi)) fail("clip: lower bound ", lo, " is above upper bound ", hi);
  Tensor out = unary(
      "clip", x, [lo, hi](float v) { return v < lo ? lo : (v > hi ? hi : v); },
      [lo, hi](float v, float) { return (v >= lo && v <= hi) ? 1.0f : 0.0f; });
  const float* px = x.data();
  replay_branches(
      out, [&](int64_t i) { return px[i] < lo ? 1u : px[i] > hi ? 2u : 0u; },
      [&](int64_t i, uint32_t side) { return side == 1 ? lo : side == 2 ? hi : px[i]; });
  return out;
}

Tensor add_scalar(const Tensor& x, float s) {
  return unary("add_scalar", x, [s](float v) { return v + s; }, [](float, float) { return 1.0f; });
}

Tensor mul_scalar(const Tensor& x, float s) {
  return unary("mul_scalar", x, [s](float v) { return v * s; }, [s](float, float) { return s; });
}

}  // namespace minidl
