// Normalisation within each sample: the fused group_norm kernel (hand-written backward) and the Keras layers
// built on it, LayerNormalization and GroupNormalization, with their ONNX inference forms.
#include <cmath>
#include <vector>

#include "minidl/autograd.h"
#include "minidl/functional.h"
#include "minidl/internal/column_sums.h"
#include "minidl/internal/parallel.h"
#include "minidl/layers.h"
#include "minidl/onnx.h"
#include "minidl/ops.h"

namespace minidl {
namespace {
// The shape every group_norm call sees: n samples of s positions of c channels, in g groups of c / g.
struct GroupLayout {
  int64_t n, s, c, g;
  int64_t width() const { return c / g; }
  double count() const { return static_cast<double>(s * width()); }  // values in one sample's group
};

// Visits the values of sample i's group j in memory order: f(index, channel).
template <class F>
void for_group(const GroupLayout& l, int64_t i, int64_t j, F&& f) {
  const int64_t w = l.width();
  for (int64_t p = 0; p < l.s; ++p) {
    const int64_t row = (i * l.s + p) * l.c + j * w;
    for (int64_t k = 0; k < w; ++k) f(row + k, j * w + k);
  }
}
}  // namespace

Tensor group_norm(const Tensor& x, int64_t groups, const Tensor& gamma, const Tensor& beta, float epsilon) {
  if (x.dim() != 3) fail("group_norm: x must be [samples, positions, channels], got ", x.shape().str());
  const GroupLayout l{x.size(0), x.size(1), x.size(2), groups};
  if (groups < 1 || l.c % groups != 0)
    fail("group_norm: ", groups, " groups do not divide ", l.c, " channels");
  for (const Tensor* t : {&gamma, &beta})
    if (t->defined() && !(t->shape() == Shape{l.c}))
      fail("group_norm: gamma and beta must be [", l.c, "], got ", t->shape().str());
  const Tensor g = gamma.defined() ? gamma : Tensor::ones({l.c});
  const Tensor b = beta.defined() ? beta : Tensor::zeros({l.c});
  Tensor xhat = Tensor::empty(x.shape()), y = Tensor::empty(x.shape()), inv = Tensor::empty({l.n, l.g});
  const float *px = x.data(), *pg = g.data(), *pb = b.data();
  float *ph = xhat.data(), *py = y.data(), *pinv = inv.data();
  // One thread per (sample, group); two passes in double, as the batch kernels.
  internal::parallel_for(l.n * l.g, l.s * l.width(), [&](int64_t q0, int64_t q1) {
    for (int64_t q = q0; q < q1; ++q) {
      const int64_t i = q / l.g, j = q % l.g;
      double sum = 0.0, squares = 0.0;
      for_group(l, i, j, [&](int64_t at, int64_t) { sum += px[at]; });
      const float mean = static_cast<float>(sum / l.count());
      for_group(l, i, j, [&](int64_t at, int64_t) {
        const double d = px[at] - mean;
        squares += d * d;
      });
      const float r = 1.0f / std::sqrt(static_cast<float>(squares / l.count()) + epsilon);
      pinv[q] = r;
      for_group(l, i, j, [&](int64_t at, int64_t k) {
        ph[at] = (px[at] - mean) * r;
        py[at] = ph[at] * pg[k] + pb[k];
      });
    }
  });
  return record(y, "group_norm", {x, g, b}, [l, inv, xhat](BackwardContext& ctx) {
    // Within a group of M values, with dx̂ = γ·dy:  dx = inv/M · (M·dx̂ − Σdx̂ − x̂·Σ(dx̂·x̂));
    // over all samples and positions:  dγ = Σ dy·x̂,  dβ = Σ dy.
    const float *dy = ctx.grad_output().data(), *ph = xhat.data(), *pinv = inv.data(), *pg = ctx.input(1).data();
    if (ctx.needs_grad(0)) {
      float* dx = ctx.grad(0);
      internal::parallel_for(l.n * l.g, l.s * l.width(), [&](int64_t q0, int64_t q1) {
        for (int64_t q = q0; q < q1; ++q) {
          const int64_t i = q / l.g, j = q % l.g;
          double a = 0.0, c = 0.0;
          for_group(l, i, j, [&](int64_t at, int64_t k) {
            const double d = double(dy[at]) * pg[k];
            a += d;
            c += d * ph[at];
          });
          const double m = l.count(), scale = pinv[q] / m;
          for_group(l, i, j, [&](int64_t at, int64_t k) {
            dx[at] += static_cast<float>(scale * (m * double(dy[at]) * pg[k] - a - ph[at] * c));
          });
        }
      });
    }
    if (ctx.needs_grad(1) || ctx.needs_grad(2)) {
      std::vector<double> dbeta(static_cast<size_t>(l.c), 0.0), dgamma(static_cast<size_t>(l.c), 0.0);
      double *pdb = dbeta.data(), *pdg = dgamma.data();
      internal::parallel_for(l.c, l.n * l.s, [&](int64_t k0, int64_t k1) {
        internal::add_column_sums_and_dots(dy + k0, ph + k0, l.n * l.s, l.c, k1 - k0, pdb + k0, pdg + k0);
      });
      for (int64_t k = 0; k < l.c; ++k) {
        if (ctx.needs_grad(1)) ctx.grad(1)[k] += static_cast<float>(dgamma[k]);
        if (ctx.needs_grad(2)) ctx.grad(2)[k] += static_cast<float>(dbeta[k]);
      }
    }
  });
}

namespace {
// The ONNX form of group_norm on a channels-last value: reshaped to `grouped` = [samples, positions, groups,
// C/groups], mean and biased variance over axes 1 and 3, normalised, reshaped back, then γ and β.
std::string export_group_norm(OnnxGraph& graph, const std::string& input, const std::string& name,
                              const std::vector<int64_t>& grouped_dims, float epsilon, const Tensor& gamma,
                              const Tensor& beta) {
  const std::string grouped =
      graph.node("Reshape", {input, graph.constant_int64(name + "/groups", grouped_dims)}, name + "/grouped");
  const auto axes = OnnxAttribute::integers("axes", {1, 3});
  const std::string mean = graph.node("ReduceMean", {grouped}, name + "/mean", {axes});
  const std::string centred = graph.node("Sub", {grouped, mean}, name + "/centred");
  const std::string squares = graph.node("Mul", {centred, centred}, name + "/squares");
  const std::string variance = graph.node("ReduceMean", {squares}, name + "/variance", {axes});
  const std::string eps = graph.constant(name + "/epsilon", Tensor::full({1}, epsilon));
  const std::string std = graph.node("Sqrt", {graph.node("Add", {variance, eps}, name + "/shifted")}, name + "/std");
  const std::string normalised = graph.node("Div", {centred, std}, name + "/normalised");
  const std::string shape = graph.node("Shape", {input}, name + "/shape");
  std::string y = graph.node("Reshape", {normalised, shape}, name + "/ungrouped");
  if (gamma.defined()) y = graph.node("Mul", {y, graph.constant(name + "/gamma", gamma)}, name + "/scaled");
  if (beta.defined()) y = graph.node("Add", {y, graph.constant(name + "/beta", beta)}, name + "/shifted_out");
  return y;
}

}  // namespace

LayerNormalization::LayerNormalization(int64_t features, float epsilon, std::string name)
    : Normalization("LayerNormalization", features, epsilon, std::move(name)) {
  gamma_ = register_parameter("gamma", Tensor::ones({features}));
  beta_ = register_parameter("beta", Tensor::zeros({features}));
}

Tensor LayerNormalization::forward(const Tensor& x) {
  output_shape(x.shape());
  // Keras axis = -1: every position of every sample is normalised over its features alone.
  return reshape(group_norm(reshape(x, {-1, 1, features_}), 1, gamma_, beta_, epsilon_), x.shape());
}

std::string LayerNormalization::export_onnx(OnnxGraph& graph, const std::string& input, const Shape&) const {
  // Every position a sample of one position and one group.
  return export_group_norm(graph, input, name(), {-1, 1, 1, features_}, epsilon_, gamma_, beta_);
}

GroupNormalization::GroupNormalization(int64_t channels, int64_t groups, float epsilon, std::string name)
    : Normalization("GroupNormalization", channels, epsilon, std::move(name), 2, "channels"), groups_(groups) {
  if (groups < 1 || channels % groups != 0)
    fail("GroupNormalization '", this->name(), "': groups must divide the ", channels, " channels, got ", groups,
         " groups — choose a divisor of ", channels);
  gamma_ = register_parameter("gamma", Tensor::ones({channels}));
  beta_ = register_parameter("beta", Tensor::zeros({channels}));
}

Tensor GroupNormalization::forward(const Tensor& x) {
  output_shape(x.shape());
  // Keras: each sample's channels in `groups` groups, statistics over the group's channels and every position.
  return reshape(group_norm(reshape(x, {x.size(0), -1, features_}), groups_, gamma_, beta_, epsilon_), x.shape());
}

std::string GroupNormalization::export_onnx(OnnxGraph& graph, const std::string& input, const Shape&) const {
  return export_group_norm(graph, input, name(), {0, -1, groups_, features_ / groups_}, epsilon_, gamma_, beta_);
}

}  // namespace minidl
