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

// y = exp(x - max) / sum(exp(x - max)) row by row, or its log when `log_space`.
void softmax_rows(const float* x, float* y, int64_t rows, int64_t cols, bool log_space) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* in = x + r * cols;
    float* out = y + r * cols;
    const float max = *std::max_element(in, in + cols);
    double total = 0.0;
    for (int64_t c = 0; c < cols; ++c) total += std::exp(static_cast<double>(in[c] - max));
    if (log_space) {
      // (x - max) first: exact for nearby values, where max + log(total) would round at the scale of max.
      const float log_total = static_cast<float>(std::log(total));
      for (int64_t c = 0; c < cols; ++c) out[c] = (in[c] - max) - log_total;
    } else {
      const double inv = 1.0 / total;
      for (int64_t c = 0; c < cols; ++c) out[c] = static_cast<float>(std::exp(static_cast<double>(in[c] - max)) * inv);
    }
  }
}
}  // namespace

Tensor softmax(const Tensor& x) {
  int64_t rows, cols;
  last_axis("softmax", x, &rows, &cols);
  Tensor out = Tensor::empty(x.shape());
  softmax_rows(x.data(), out.data(), rows, cols, false);
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

}  // namespace minidl
