// Keras BatchNormalization: the layer, and its fused training/inference kernels with hand-written backward.
#include <cmath>
#include <iomanip>
#include <sstream>
#include <vector>

#include "minidl/autograd.h"
#include "minidl/functional.h"
#include "minidl/internal/column_sums.h"
#include "minidl/internal/parallel.h"
#include "minidl/layers.h"
#include "minidl/conv_layers.h"
#include "minidl/onnx.h"

namespace minidl {
namespace {
// x [..., C] is read as [N, C] rows.
void rows_and_channels(const char* op, const Tensor& x, int64_t* n, int64_t* c) {
  if (x.dim() < 1) fail(op, ": needs at least one axis, got shape ", x.shape().str());
  *c = x.size(-1);
  *n = *c ? x.numel() / *c : 0;
}

void check_channels(const char* op, const char* what, const Tensor& t, int64_t c) {
  if (t.defined() && !(t.shape() == Shape{c}))
    fail(op, ": ", what, " has shape ", t.shape().str(), ", expected [", c, "]");
}

// Per-channel sums into `out` (resized to c, zeroed): kernel(k0, k1, sums) adds the sums of channels
// [k0, k1) over every row. Threads split the channels (see column_sums.h).
template <class Kernel>
void channel_sums(int64_t n, int64_t c, std::vector<double>& out, Kernel kernel) {
  out.assign(static_cast<size_t>(c), 0.0);
  double* sums = out.data();
  internal::parallel_for(c, n, [&](int64_t k0, int64_t k1) { kernel(k0, k1, sums); });
}

// Scratch for the sums, reused across calls (kernels run on the calling thread's scratch).
thread_local std::vector<double> t_sum_a, t_sum_b, t_scale;

// x̂ = (x − μ)·inv and y = γ·x̂ + β over `rows` rows of c channels. (__restrict: see column_sums.h.)
void normalize_rows(const float* __restrict x, const float* __restrict mean, const float* __restrict inv,
                    const float* __restrict gamma, const float* __restrict beta, int64_t rows, int64_t c,
                    float* __restrict xhat, float* __restrict y) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t k = 0; k < c; ++k) {
      const float h = (x[r * c + k] - mean[k]) * inv[k];
      xhat[r * c + k] = h;
      y[r * c + k] = h * gamma[k] + beta[k];
    }
}

// dx (+)= scale·(N·dy − dβ − x̂·dγ) over `rows` rows of c channels, in double as the sums are.
void batch_norm_dx_rows(const float* __restrict dy, const float* __restrict xhat, const double* __restrict scale,
                        const double* __restrict dbeta, const double* __restrict dgamma, double count, int64_t rows,
                        int64_t c, bool accumulate, float* __restrict dx) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t k = 0; k < c; ++k) {
      const int64_t i = r * c + k;
      const float d = static_cast<float>(scale[k] * (count * dy[i] - dbeta[k] - xhat[i] * dgamma[k]));
      dx[i] = accumulate ? dx[i] + d : d;
    }
}
}  // namespace

Tensor batch_norm_train(const Tensor& x, const Tensor& gamma, const Tensor& beta, float epsilon,
                        Tensor& batch_mean, Tensor& batch_variance) {
  int64_t n, c;
  rows_and_channels("batch_norm_train", x, &n, &c);
  check_channels("batch_norm_train", "gamma", gamma, c);
  check_channels("batch_norm_train", "beta", beta, c);
  const Tensor g = gamma.defined() ? gamma : Tensor::ones({c});
  const Tensor b = beta.defined() ? beta : Tensor::zeros({c});
  batch_mean = Tensor::empty({c});
  batch_variance = Tensor::empty({c});
  Tensor inv = Tensor::empty({c}), xhat = Tensor::empty(x.shape()), y = Tensor::empty(x.shape());
  const float* px = x.data();
  float *mean = batch_mean.data(), *var = batch_variance.data(), *pinv = inv.data();

  // Two passes: the mean, then the biased variance around it (docs/keras.md §1).
  channel_sums(n, c, t_sum_a, [&](int64_t k0, int64_t k1, double* sums) {
    internal::add_column_sums(px + k0, n, c, k1 - k0, sums + k0);
  });
  for (int64_t k = 0; k < c; ++k) mean[k] = static_cast<float>(t_sum_a[k] / static_cast<double>(n));
  channel_sums(n, c, t_sum_a, [&](int64_t k0, int64_t k1, double* sums) {
    internal::add_column_squared_deviations(px + k0, mean + k0, n, c, k1 - k0, sums + k0);
  });
  for (int64_t k = 0; k < c; ++k) {
    var[k] = static_cast<float>(t_sum_a[k] / static_cast<double>(n));
    pinv[k] = 1.0f / std::sqrt(var[k] + epsilon);
  }
  const float *pg = g.data(), *pb = b.data();
  float *ph = xhat.data(), *py = y.data();
  internal::parallel_for(n, c, [&](int64_t r0, int64_t r1) {
    normalize_rows(px + r0 * c, mean, pinv, pg, pb, r1 - r0, c, ph + r0 * c, py + r0 * c);
  });

  return record(y, "batch_norm_train", {x, g, b}, [n, c, inv, xhat](BackwardContext& ctx) {
    // With x̂ = (x − μ)·inv, inv = 1/sqrt(σ² + eps), y = γ x̂ + β, and μ, σ² functions of the whole batch:
    //   dβ = Σ dy        dγ = Σ dy·x̂        dx = (γ·inv / N)·(N·dy − dβ − x̂·dγ)
    // (the last from dx̂ = γ dy and the chain through μ and σ²; docs/keras.md §1).
    const float *dy = ctx.grad_output().data(), *ph = xhat.data(), *pinv = inv.data();
    const float* pg = ctx.input(1).data();
    // Thread-local scratch is named here, on the calling thread, and reaches the workers as pointers.
    t_sum_b.assign(static_cast<size_t>(c), 0.0);
    double* dgamma = t_sum_b.data();
    channel_sums(n, c, t_sum_a, [&](int64_t k0, int64_t k1, double* dbeta) {
      internal::add_column_sums_and_dots(dy + k0, ph + k0, n, c, k1 - k0, dbeta + k0, dgamma + k0);
    });
    const double* dbeta = t_sum_a.data();
    if (ctx.needs_grad(0)) {
      bool fresh = false;
      float* dx = ctx.grad_for_write(0, &fresh);
      t_scale.resize(static_cast<size_t>(c));
      double* scale = t_scale.data();
      for (int64_t k = 0; k < c; ++k) scale[k] = double(pg[k]) * pinv[k] / static_cast<double>(n);
      internal::parallel_for(n, c, [&](int64_t r0, int64_t r1) {
        batch_norm_dx_rows(dy + r0 * c, ph + r0 * c, scale, dbeta, dgamma, static_cast<double>(n), r1 - r0, c,
                           !fresh, dx + r0 * c);
      });
    }
    if (ctx.needs_grad(1))
      for (int64_t k = 0; k < c; ++k) ctx.grad(1)[k] += static_cast<float>(dgamma[k]);
    if (ctx.needs_grad(2))
      for (int64_t k = 0; k < c; ++k) ctx.grad(2)[k] += static_cast<float>(dbeta[k]);
  });
}

Tensor batch_norm_inference(const Tensor& x, const Tensor& mean, const Tensor& variance, const Tensor& gamma,
                            const Tensor& beta, float epsilon) {
  int64_t n, c;
  rows_and_channels("batch_norm_inference", x, &n, &c);
  check_channels("batch_norm_inference", "mean", mean, c);
  check_channels("batch_norm_inference", "variance", variance, c);
  check_channels("batch_norm_inference", "gamma", gamma, c);
  check_channels("batch_norm_inference", "beta", beta, c);
  const Tensor g = gamma.defined() ? gamma : Tensor::ones({c});
  const Tensor b = beta.defined() ? beta : Tensor::zeros({c});
  Tensor y = Tensor::empty(x.shape());
  const float *px = x.data(), *pm = mean.data(), *pv = variance.data(), *pg = g.data(), *pb = b.data();
  float* py = y.data();
  for (int64_t r = 0; r < n; ++r)
    for (int64_t k = 0; k < c; ++k) {
      const int64_t i = r * c + k;
      py[i] = (px[i] - pm[k]) * (1.0f / std::sqrt(pv[k] + epsilon)) * pg[k] + pb[k];
    }
  return record(y, "batch_norm_inference", {x, g, b, mean, variance}, [n, c, epsilon](BackwardContext& ctx) {
    // Fixed statistics: dx = dy·γ·inv, dγ = Σ dy·(x − m)·inv, dβ = Σ dy, with inv = rsqrt(v + eps).
    const float *dy = ctx.grad_output().data(), *px = ctx.input(0).data(), *pg = ctx.input(1).data();
    const float *pm = ctx.input(3).data(), *pv = ctx.input(4).data();
    float* dx = ctx.needs_grad(0) ? ctx.grad(0) : nullptr;
    float* dg = ctx.needs_grad(1) ? ctx.grad(1) : nullptr;
    float* db = ctx.needs_grad(2) ? ctx.grad(2) : nullptr;
    for (int64_t r = 0; r < n; ++r)
      for (int64_t k = 0; k < c; ++k) {
        const int64_t i = r * c + k;
        const float inv = 1.0f / std::sqrt(pv[k] + epsilon);
        if (dx) dx[i] += dy[i] * pg[k] * inv;
        if (dg) dg[k] += dy[i] * (px[i] - pm[k]) * inv;
        if (db) db[k] += dy[i];
      }
  });
}

BatchNormalization::BatchNormalization(int64_t features, BatchNormalizationOptions options, std::string name)
    : Module(std::move(name)), features_(features), options_(options) {
  if (features <= 0) fail("BatchNormalization '", this->name(), "': features must be > 0, got ", features);
  if (!(options.momentum >= 0.0f && options.momentum <= 1.0f))
    fail("BatchNormalization '", this->name(), "': momentum must be in [0, 1], got ", options.momentum,
         " (Keras convention: weight on the old moving value; PyTorch's 0.1 is Keras's 0.9)");
  if (!(options.epsilon > 0.0f))
    fail("BatchNormalization '", this->name(), "': epsilon must be > 0, got ", options.epsilon);
  if (options.scale) gamma_ = register_parameter("gamma", Tensor::ones({features}));
  if (options.center) beta_ = register_parameter("beta", Tensor::zeros({features}));
  moving_mean_ = register_buffer("moving_mean", Tensor::zeros({features}));
  moving_variance_ = register_buffer("moving_variance", Tensor::ones({features}));
}

Shape BatchNormalization::output_shape(const Shape& input) const {
  if (input.rank() < 1 || input[input.rank() - 1] != features_)
    fail("BatchNormalization '", name(), "': expects ", features_, " features on the last axis, got ", input.str());
  return input;
}

int64_t BatchNormalization::min_training_batch(const Shape& input) const {
  // Statistics over every axis but the last: one sample suffices when it holds several positions (an image's
  // H×W), not when it holds one value per channel. A frozen layer uses its moving statistics.
  const int64_t per_sample = input.rank() > 1 ? input.numel() / std::max<int64_t>(input[0], 1) / features_ : 1;
  return trainable() && per_sample < 2 ? 2 : 1;
}

std::string BatchNormalization::export_onnx(OnnxGraph& graph, const std::string& input, const Shape& input_shape) const {
  if (input_shape.rank() != 2 && input_shape.rank() != 4)
    fail("BatchNormalization '", name(), "': ONNX export takes [N, C] or images [N, H, W, C], got ", input_shape.str());
  // Inference form: BatchNormalization(X, scale, B, mean, var) with the moving statistics, over ONNX's channel
  // axis 1 ([N, C], or images as [N, C, H, W]).
  const Tensor scale = gamma_.defined() ? gamma_ : Tensor::ones({features_});
  const Tensor shift = beta_.defined() ? beta_ : Tensor::zeros({features_});
  const auto normalise = [&](const std::string& x) {
    return graph.node("BatchNormalization",
                      {x, graph.constant(name() + "/gamma", scale), graph.constant(name() + "/beta", shift),
                       graph.constant(name() + "/moving_mean", moving_mean_),
                       graph.constant(name() + "/moving_variance", moving_variance_)},
                      name() + "/normalize", {OnnxAttribute::real("epsilon", options_.epsilon)});
  };
  return input_shape.rank() == 2 ? normalise(input) : export_channels_first(graph, input, name(), normalise);
}

std::string BatchNormalization::summary_note() const {
  std::ostringstream out;
  out << std::setprecision(5);  // 1 − 0.99f is 0.0099999905 in float: show 0.01
  out << "momentum=" << options_.momentum << " (weight on the old moving value; PyTorch momentum="
      << 1.0f - options_.momentum << "), epsilon=" << options_.epsilon;
  return out.str();
}

Tensor BatchNormalization::forward(const Tensor& x) {
  output_shape(x.shape());
  // Keras: a frozen layer (trainable = false) normalises with its moving statistics even in training.
  if (!is_training() || !trainable())
    return batch_norm_inference(x, moving_mean_, moving_variance_, gamma_, beta_, options_.epsilon);
  const int64_t n = x.numel() / features_;
  if (n < 2)
    fail("BatchNormalization '", name(), "': a training batch needs at least 2 samples, got ", n,
         " (one sample normalises to 0 and the output is just beta) — use a larger batch, drop the partial last "
         "batch, or call eval()");
  Tensor mean, variance;
  const Tensor y = batch_norm_train(x, gamma_, beta_, options_.epsilon, mean, variance);
  // The moving update is a side effect of the training forward pass (docs/keras.md §1):
  //   moving = moving·momentum + batch·(1 − momentum)
  const float m = options_.momentum;
  float *mm = moving_mean_.data(), *mv = moving_variance_.data();
  for (int64_t k = 0; k < features_; ++k) {
    mm[k] = mm[k] * m + mean.data()[k] * (1.0f - m);
    mv[k] = mv[k] * m + variance.data()[k] * (1.0f - m);
  }
  return y;
}

}  // namespace minidl
