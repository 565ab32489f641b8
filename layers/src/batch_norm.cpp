// BatchNormalization's fused training and inference kernels, with hand-written backward passes.
#include <algorithm>
#include <cmath>
#include <vector>

#include "minidl/autograd.h"
#include "minidl/distributed.h"
#include "minidl/functional.h"
#include "minidl/internal/column_sums.h"
#include "minidl/internal/parallel.h"

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
// The synchronised kernel's: the sums sent to the other processes, and zeros to centre Σx² on.
thread_local std::vector<double> t_sync, t_sync_local;
thread_local std::vector<float> t_zeros;

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

// What both training kernels start with: x read as n rows of c channels, checked; γ and β (ones and zeros when
// undefined); the [c] statistics to fill; and the buffers for inv, x̂ and y. Callers name the fields rather than
// bind them with `auto [...]`: their lambdas capture them, which clang before 16 refuses for bindings.
struct TrainingPass {
  int64_t n, c;
  Tensor g, b, inv, xhat, y;
};

TrainingPass start_training_pass(const char* op, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                 Tensor& batch_mean, Tensor& batch_variance) {
  int64_t n, c;
  rows_and_channels(op, x, &n, &c);
  check_channels(op, "gamma", gamma, c);
  check_channels(op, "beta", beta, c);
  batch_mean = Tensor::empty({c});
  batch_variance = Tensor::empty({c});
  return {n, c, gamma.defined() ? gamma : Tensor::ones({c}), beta.defined() ? beta : Tensor::zeros({c}),
          Tensor::empty({c}), Tensor::empty(x.shape()), Tensor::empty(x.shape())};
}
}  // namespace

Tensor batch_norm_train(const Tensor& x, const Tensor& gamma, const Tensor& beta, float epsilon,
                        Tensor& batch_mean, Tensor& batch_variance) {
  TrainingPass pass = start_training_pass("batch_norm_train", x, gamma, beta, batch_mean, batch_variance);
  const int64_t n = pass.n, c = pass.c;
  Tensor &g = pass.g, &b = pass.b, &inv = pass.inv, &xhat = pass.xhat, &y = pass.y;
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

Tensor batch_norm_train_synced(const Tensor& x, const Tensor& gamma, const Tensor& beta, float epsilon,
                               Communicator& world, Tensor& batch_mean, Tensor& batch_variance) {
  TrainingPass pass = start_training_pass("batch_norm_train_synced", x, gamma, beta, batch_mean, batch_variance);
  const int64_t n = pass.n, c = pass.c;
  Tensor &g = pass.g, &b = pass.b, &inv = pass.inv, &xhat = pass.xhat, &y = pass.y;
  const float* px = x.data();
  float *mean = batch_mean.data(), *var = batch_variance.data(), *pinv = inv.data();
  // Keras's synchronized statistics: Σx, Σx² and the count summed over the processes, then
  // mean = Σx / count and var = max(Σx² / count − mean², 0), in double.
  std::vector<double>& sums = t_sync;
  sums.assign(static_cast<size_t>(2 * c + 1), 0.0);
  t_zeros.assign(static_cast<size_t>(c), 0.0f);
  const float* zeros = t_zeros.data();
  channel_sums(n, c, t_sum_a, [&](int64_t k0, int64_t k1, double* s) { internal::add_column_sums(px + k0, n, c, k1 - k0, s + k0); });
  std::copy(t_sum_a.begin(), t_sum_a.end(), sums.begin());
  channel_sums(n, c, t_sum_a, [&](int64_t k0, int64_t k1, double* s) {
    internal::add_column_squared_deviations(px + k0, zeros + k0, n, c, k1 - k0, s + k0);
  });
  std::copy(t_sum_a.begin(), t_sum_a.end(), sums.begin() + c);
  sums[static_cast<size_t>(2 * c)] = static_cast<double>(n);
  world.sum(sums.data(), static_cast<int64_t>(sums.size()));
  const double count = sums[static_cast<size_t>(2 * c)];
  for (int64_t k = 0; k < c; ++k) {
    const double m = sums[k] / count;
    mean[k] = static_cast<float>(m);
    var[k] = static_cast<float>(std::max(sums[c + k] / count - m * m, 0.0));
    pinv[k] = 1.0f / std::sqrt(var[k] + epsilon);
  }
  const float *pg = g.data(), *pb = b.data();
  float *ph = xhat.data(), *py = y.data();
  internal::parallel_for(n, c, [&](int64_t r0, int64_t r1) {
    normalize_rows(px + r0 * c, mean, pinv, pg, pb, r1 - r0, c, ph + r0 * c, py + r0 * c);
  });
  return record(y, "batch_norm_train_synced", {x, g, b}, [n, c, count, inv, xhat, &world](BackwardContext& ctx) {
    // As batch_norm_train's, with Σdy and Σdy·x̂ summed over the processes and N the global count. Each process
    // differentiates its own loss; the gradient all-reduce then averages the parameters' gradients, so γ and β
    // take this process's own sums.
    const float *dy = ctx.grad_output().data(), *ph = xhat.data(), *pinv = inv.data();
    const float* pg = ctx.input(1).data();
    // This process's Σdy and Σdy·x̂ (γ's and β's gradients), then the same summed over the processes (dx's).
    t_sync_local.assign(static_cast<size_t>(2 * c), 0.0);
    double *dbeta = t_sync_local.data(), *dgamma = t_sync_local.data() + c;
    internal::parallel_for(c, n, [&](int64_t k0, int64_t k1) {
      internal::add_column_sums_and_dots(dy + k0, ph + k0, n, c, k1 - k0, dbeta + k0, dgamma + k0);
    });
    t_sync.assign(t_sync_local.begin(), t_sync_local.end());
    world.sum(t_sync.data(), 2 * c);
    const double* global = t_sync.data();
    if (ctx.needs_grad(0)) {
      bool fresh = false;
      float* dx = ctx.grad_for_write(0, &fresh);
      t_scale.resize(static_cast<size_t>(c));
      double* scale = t_scale.data();
      for (int64_t k = 0; k < c; ++k) scale[k] = double(pg[k]) * pinv[k] / count;
      internal::parallel_for(n, c, [&](int64_t r0, int64_t r1) {
        batch_norm_dx_rows(dy + r0 * c, ph + r0 * c, scale, global, global + c, count, r1 - r0, c,
                           !fresh, dx + r0 * c);
      });
    }
    if (ctx.needs_grad(1))
      for (int64_t k = 0; k < c; ++k) ctx.grad(1)[k] += static_cast<float>(dgamma[k]);
    if (ctx.needs_grad(2))
      for (int64_t k = 0; k < c; ++k) ctx.grad(2)[k] += static_cast<float>(dbeta[k]);
  });
}

}  // namespace minidl
