// Neural-network ops on the last axis: stable softmax and log_softmax, one_hot and gather for labels.
#include <algorithm>
#include <cmath>
#include <vector>

#include "minidl/autograd.h"
#include "minidl/ops.h"

namespace minidl {
namespace {
// Rows of the last axis: x is read as [rows, cols].
void last_axis(const char* op, const Tensor& x, int64_t* rows, int64_t* cols) {
  if (x.dim() == 0) fail(op, ": needs at least one axis, got shape ", x.shape().str());
  *cols = x.size(-1);
  *rows = *cols ? x.numel() / *cols : 0;
}

// y = exp(x - max) / sum(exp(x - max)) row by row, or its log when `log_space`. Each exponential once, in float
// (x - max <= 0, so it lies in (0, 1]), summed in double.
void softmax_rows(const float* x, float* y, int64_t rows, int64_t cols, bool log_space) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* in = x + r * cols;
    float* out = y + r * cols;
    const float max = *std::max_element(in, in + cols);
    double total = 0.0;
    for (int64_t c = 0; c < cols; ++c) total += out[c] = std::exp(in[c] - max);
    if (log_space) {
      // (x - max) first: exact for nearby values, where max + log(total) would round at the scale of max; then
      // one rounding to float, so outputs do not share the rounding error of a float log(total).
      const double log_total = std::log(total);
      for (int64_t c = 0; c < cols; ++c) out[c] = static_cast<float>(static_cast<double>(in[c] - max) - log_total);
    } else {
      const float inv = static_cast<float>(1.0 / total);
      for (int64_t c = 0; c < cols; ++c) out[c] *= inv;
    }
  }
}
}  // namespace

Tensor softmax(const Tensor& x) {
  int64_t rows, cols;
  last_axis("softmax", x, &rows, &cols);
  Tensor out = Tensor::empty(x.shape());
  softmax_rows(x.data(), out.data(), rows, cols, false);
  out.impl().softmax_logits = x.impl_ptr();
  return record(out, "softmax", {x}, [rows, cols](BackwardContext& c) {
    // dx_j = y_j (g_j - Σ_k g_k y_k)
    const float *y = c.output().data(), *g = c.grad_output().data();
    float* gx = c.grad(0);
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t o = r * cols;
      double dot = 0.0;
      for (int64_t k = 0; k < cols; ++k) dot += static_cast<double>(g[o + k]) * y[o + k];
      for (int64_t k = 0; k < cols; ++k) gx[o + k] += y[o + k] * (g[o + k] - static_cast<float>(dot));
    }
  });
}

Tensor log_softmax(const Tensor& x) {
  int64_t rows, cols;
  last_axis("log_softmax", x, &rows, &cols);
  Tensor out = Tensor::empty(x.shape());
  softmax_rows(x.data(), out.data(), rows, cols, true);
  return record(out, "log_softmax", {x}, [rows, cols](BackwardContext& c) {
    // dx_j = g_j - softmax_j Σ_k g_k, with softmax = exp(y)
    const float *y = c.output().data(), *g = c.grad_output().data();
    float* gx = c.grad(0);
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t o = r * cols;
      double total = 0.0;
      for (int64_t k = 0; k < cols; ++k) total += g[o + k];
      for (int64_t k = 0; k < cols; ++k) gx[o + k] += g[o + k] - std::exp(y[o + k]) * static_cast<float>(total);
    }
  });
}

Tensor one_hot(std::span<const int32_t> labels, int64_t classes) {
  if (classes <= 0) fail("one_hot: the number of classes must be > 0, got ", classes);
  Tensor out = Tensor::zeros({static_cast<int64_t>(labels.size()), classes});
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] < 0 || labels[i] >= classes)
      fail("one_hot: label ", labels[i], " at index ", i, " is out of range for ", classes, " classes");
    out.data()[static_cast<int64_t>(i) * classes + labels[i]] = 1.0f;
  }
  return out;
}

Tensor gather(const Tensor& x, std::span<const int32_t> labels) {
  if (x.dim() != 2) fail("gather: expects x of shape [N,C], got ", x.shape().str());
  const int64_t rows = x.size(0), cols = x.size(1);
  if (static_cast<int64_t>(labels.size()) != rows)
    fail("gather: ", labels.size(), " labels for x of shape ", x.shape().str(), " (need one per row)");
  Tensor out = Tensor::empty({rows});
  for (int64_t i = 0; i < rows; ++i) {
    if (labels[i] < 0 || labels[i] >= cols)
      fail("gather: label ", labels[i], " at index ", i, " is out of range for ", cols, " classes");
    out.data()[i] = x.data()[i * cols + labels[i]];
  }
  return record(out, "gather", {x}, [cols, index = std::vector<int32_t>(labels.begin(), labels.end())](
                                        BackwardContext& c) {
    const float* g = c.grad_output().data();
    float* gx = c.grad(0);
    for (size_t i = 0; i < index.size(); ++i) gx[static_cast<int64_t>(i) * cols + index[i]] += g[i];
  });
}

Tensor softmax_logits_of(const Tensor& probabilities) {
  const auto& logits = probabilities.impl().softmax_logits;
  return logits ? Tensor(logits) : Tensor();
}

Tensor sigmoid_logits_of(const Tensor& probabilities) {
  const auto& logits = probabilities.impl().sigmoid_logits;
  return logits ? Tensor(logits) : Tensor();
}

Tensor sigmoid_cross_entropy(const Tensor& logits, const Tensor& targets) {
  if (!(targets.shape() == logits.shape()))
    fail("sigmoid_cross_entropy: targets ", targets.shape().str(), " do not match logits ", logits.shape().str());
  const int64_t n = logits.numel();
  const float *z = logits.data(), *y = targets.data();
  double total = 0.0;
  for (int64_t i = 0; i < n; ++i)
    total += std::max(z[i], 0.0f) - static_cast<double>(z[i]) * y[i] + std::log1p(std::exp(-std::fabs(z[i])));
  const float loss = n ? static_cast<float>(total / static_cast<double>(n)) : 0.0f;
  return record(Tensor::scalar(loss), "sigmoid_cross_entropy", {logits, targets}, [n](BackwardContext& c) {
    // d/dz = sigmoid(z) − y; d/dy = −z; the mean divides by n.
    const float scale = c.grad_output().item() / static_cast<float>(std::max<int64_t>(n, 1));
    const float *z = c.input(0).data(), *y = c.input(1).data();
    if (c.needs_grad(0)) {
      float* gz = c.grad(0);
      for (int64_t i = 0; i < n; ++i) {
        const float e = std::exp(-std::fabs(z[i]));  // the sigmoid without overflow, as sigmoid() computes it
        const float s = z[i] >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
        gz[i] += scale * (s - y[i]);
      }
    }
    if (c.needs_grad(1)) {
      float* gy = c.grad(1);
      for (int64_t i = 0; i < n; ++i) gy[i] -= scale * z[i];
    }
  });
}

namespace {
// Row losses logsumexp(z) − Σ_c y_c z_c and, into `probs`, softmax(z); the mean loss over rows is returned.
// Targets are read through target(r, c) so one kernel serves one-hot rows and integer labels.
template <class Target>
float cross_entropy_rows(const float* z, int64_t rows, int64_t cols, float* probs, Target target) {
  double total = 0.0;
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = z + r * cols;
    const float max = *std::max_element(row, row + cols);
    float* p = probs + r * cols;
    double sum_exp = 0.0;
    for (int64_t c = 0; c < cols; ++c) sum_exp += p[c] = std::exp(row[c] - max);  // once each, in (0, 1]
    const double log_sum = std::log(sum_exp);
    const float inv = static_cast<float>(1.0 / sum_exp);
    double loss = 0.0;
    for (int64_t c = 0; c < cols; ++c) {
      const double t = target(r, c);
      // logsumexp(z) − z_c = log_sum − (z_c − max), weighted by the target mass on c
      if (t != 0.0) loss += t * (log_sum - (row[c] - max));
      p[c] *= inv;
    }
    total += loss;
  }
  return rows ? static_cast<float>(total / static_cast<double>(rows)) : 0.0f;
}

void check_logits(const char* op, const Tensor& logits) {
  if (logits.dim() != 2) fail(op, ": expects logits of shape [N,C], got ", logits.shape().str());
}
}  // namespace

Tensor softmax_cross_entropy(const Tensor& logits, const Tensor& targets) {
  check_logits("softmax_cross_entropy", logits);
  if (!(targets.shape() == logits.shape()))
    fail("softmax_cross_entropy: targets ", targets.shape().str(), " do not match logits ", logits.shape().str());
  const int64_t rows = logits.size(0), cols = logits.size(1);
  Tensor probs = Tensor::empty(logits.shape());
  const float* y = targets.data();
  const float loss = cross_entropy_rows(logits.data(), rows, cols, probs.data(),
                                        [&](int64_t r, int64_t c) { return y[r * cols + c]; });
  return record(Tensor::scalar(loss), "softmax_cross_entropy", {logits, targets},
                [rows, cols, probs](BackwardContext& c) {
                  // d/dz_c [logsumexp(z) − Σ y z] = p_c·Σy − y_c; the mean divides by N.
                  // d/dy_c = logsumexp(z) − z_c = −log p_c.
                  const float scale = c.grad_output().item() / static_cast<float>(std::max<int64_t>(rows, 1));
                  const float *p = probs.data(), *y = c.input(1).data();
                  if (c.needs_grad(0)) {
                    float* gz = c.grad(0);
                    for (int64_t r = 0; r < rows; ++r) {
                      float mass = 0.0f;
                      for (int64_t k = 0; k < cols; ++k) mass += y[r * cols + k];
                      for (int64_t k = 0; k < cols; ++k)
                        gz[r * cols + k] += scale * (p[r * cols + k] * mass - y[r * cols + k]);
                    }
                  }
                  if (c.needs_grad(1)) {
                    float* gy = c.grad(1);
                    for (int64_t i = 0; i < rows * cols; ++i) gy[i] -= scale * std::log(p[i]);
                  }
                });
}

Tensor sparse_softmax_cross_entropy(const Tensor& logits, std::span<const int32_t> labels) {
  check_logits("sparse_softmax_cross_entropy", logits);
  const int64_t rows = logits.size(0), cols = logits.size(1);
  if (static_cast<int64_t>(labels.size()) != rows)
    fail("sparse_softmax_cross_entropy: ", labels.size(), " labels for logits of shape ", logits.shape().str());
  for (size_t i = 0; i < labels.size(); ++i)
    if (labels[i] < 0 || labels[i] >= cols)
      fail("sparse_softmax_cross_entropy: label ", labels[i], " at index ", i, " is out of range for ", cols,
           " classes");
  Tensor probs = Tensor::empty(logits.shape());
  const float loss = cross_entropy_rows(logits.data(), rows, cols, probs.data(),
                                        [&](int64_t r, int64_t c) { return labels[r] == c ? 1.0 : 0.0; });
  return record(Tensor::scalar(loss), "sparse_softmax_cross_entropy", {logits},
                [rows, cols, probs, index = std::vector<int32_t>(labels.begin(), labels.end())](BackwardContext& c) {
                  // (softmax(z) − onehot(label)) / N
                  const float scale = c.grad_output().item() / static_cast<float>(std::max<int64_t>(rows, 1));
                  const float* p = probs.data();
                  float* gz = c.grad(0);
                  for (int64_t r = 0; r < rows; ++r) {
                    for (int64_t k = 0; k < cols; ++k) gz[r * cols + k] += scale * p[r * cols + k];
                    gz[r * cols + index[r]] -= scale;
                  }
                });
}

}  // namespace minidl
