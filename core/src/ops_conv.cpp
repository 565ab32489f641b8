// Convolution and pooling, channels last (NHWC), as Keras's Conv2D, MaxPooling2D and AveragePooling2D:
// convolution as im2col + the packed matrix product, pooling by windows; backward passes beside each.
#include <algorithm>
#include <cmath>
#include <limits>

#include "minidl/autograd.h"
#include "minidl/gradcheck.h"
#include "minidl/internal/kernels.h"
#include "minidl/internal/parallel.h"
#include "minidl/ops.h"

namespace minidl {

Window2d window2d(const char* op, const Shape& x, std::array<int64_t, 2> size, std::array<int64_t, 2> strides,
                  Padding padding) {
  if (x.rank() != 4) fail(op, ": expects images [N,H,W,C], got ", x.str());
  Window2d w;
  w.kh = size[0], w.kw = size[1], w.sh = strides[0], w.sw = strides[1];
  if (w.kh < 1 || w.kw < 1 || w.sh < 1 || w.sw < 1)
    fail(op, ": window ", w.kh, "x", w.kw, " and strides ", w.sh, "x", w.sw, " must be >= 1");
  const int64_t h = x[1], wd = x[2];
  // Keras: "valid" keeps the windows that fit; "same" gives ceil(in / stride) outputs, padding as evenly as
  // possible with the extra row or column after (bottom, right).
  if (padding == Padding::valid) {
    if (w.kh > h || w.kw > wd)
      fail(op, ": window ", w.kh, "x", w.kw, " is larger than the ", h, "x", wd, " input (padding valid) — use padding "
           "same or a smaller window");
    w.out_h = (h - w.kh) / w.sh + 1, w.out_w = (wd - w.kw) / w.sw + 1;
  } else {
    w.out_h = (h + w.sh - 1) / w.sh, w.out_w = (wd + w.sw - 1) / w.sw;
    w.pad_top = std::max<int64_t>((w.out_h - 1) * w.sh + w.kh - h, 0) / 2;
    w.pad_left = std::max<int64_t>((w.out_w - 1) * w.sw + w.kw - wd, 0) / 2;
  }
  return w;
}

namespace {
// cols[m, (i·kw + j)·C + c] = x[n, oh·sh + i − top, ow·sw + j − left, c] (0 outside), m = (n, oh, ow):
// each output position's receptive field as one row, so the convolution is cols · kernel[kh·kw·C, F].
void im2col(const float* x, const Shape& in, const Window2d& w, float* cols) {
  const int64_t h = in[1], wd = in[2], c = in[3], rows = in[0] * w.out_h * w.out_w, k = w.kh * w.kw * c;
  internal::parallel_for(rows, k, [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m) {
      const int64_t n = m / (w.out_h * w.out_w), oh = m / w.out_w % w.out_h, ow = m % w.out_w;
      float* row = cols + m * k;
      // For one kernel row i, the window's columns j are consecutive input positions: in NHWC, one run of
      // kw·C floats, clipped to the image, with zeros for the padding on either side.
      const int64_t iw0 = ow * w.sw - w.pad_left, j0 = std::max<int64_t>(0, -iw0), j1 = std::min(w.kw, wd - iw0);
      for (int64_t i = 0; i < w.kh; ++i) {
        const int64_t ih = oh * w.sh + i - w.pad_top;
        float* dst = row + i * w.kw * c;
        if (ih < 0 || ih >= h || j0 >= j1) {
          std::fill_n(dst, w.kw * c, 0.0f);
          continue;
        }
        std::fill_n(dst, j0 * c, 0.0f);
        const float* src = x + ((n * h + ih) * wd + iw0 + j0) * c;
        const int64_t run = (j1 - j0) * c;
        // A plain loop for short runs (a grayscale first layer copies 3 floats): a library call costs more there.
        if (run >= 16) std::copy_n(src, run, dst + j0 * c);
        else for (int64_t q = 0; q < run; ++q) dst[j0 * c + q] = src[q];
        std::fill_n(dst + j1 * c, (w.kw - j1) * c, 0.0f);
      }
    }
  });
}

// The adjoint of im2col: dx[n, ih, iw, c] (+)= every cols entry im2col copied from it. Threads take whole
// images, each summing in the same fixed order, so the result never depends on the thread count.
void col2im(const float* cols, const Shape& in, const Window2d& w, float* dx, bool accumulate) {
  const int64_t h = in[1], wd = in[2], c = in[3], k = w.kh * w.kw * c, image = h * wd * c;
  internal::parallel_for(in[0], w.out_h * w.out_w * k, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      float* out = dx + n * image;
      if (!accumulate) std::fill_n(out, image, 0.0f);
      for (int64_t oh = 0; oh < w.out_h; ++oh)
        for (int64_t ow = 0; ow < w.out_w; ++ow) {
          const float* row = cols + ((n * w.out_h + oh) * w.out_w + ow) * k;
          for (int64_t i = 0; i < w.kh; ++i) {
            const int64_t ih = oh * w.sh + i - w.pad_top;
            if (ih < 0 || ih >= h) continue;
            for (int64_t j = 0; j < w.kw; ++j) {
              const int64_t iw = ow * w.sw + j - w.pad_left;
              if (iw < 0 || iw >= wd) continue;
              const float* src = row + (i * w.kw + j) * c;
              float* dst = out + (ih * wd + iw) * c;
              for (int64_t q = 0; q < c; ++q) dst[q] += src[q];
            }
          }
        }
    }
  });
}

// A 1×1 window at stride 1 without padding reads every input position once, in order: x itself is cols.
bool identity_window(const Window2d& w) { return w.kh == 1 && w.kw == 1 && w.sh == 1 && w.sw == 1; }

// The images of a batch in chunks whose im2col columns take at most kBytes (at least one image a chunk), and
// the columns of each chunk in turn. The chunks depend on the shapes alone, never on the thread count.
class ConvChunks {
 public:
  static constexpr int64_t kBytes = int64_t{4} << 20;
  ConvChunks(const Shape& in, const Window2d& w, int64_t k)
      : in_(in), w_(w), k_(k), positions_(w.out_h * w.out_w),
        images_(std::clamp<int64_t>(kBytes / static_cast<int64_t>(sizeof(float)) / std::max<int64_t>(positions_ * k, 1),
                                    1, std::max<int64_t>(in[0], 1))) {}
  int64_t rows_per_chunk() const { return images_ * positions_; }
  // f(first image, images, first row, rows) for each chunk, in order.
  template <class F>
  void each_range(F f) const {
    for (int64_t image = 0; image < in_[0]; image += images_) {
      const int64_t images = std::min(images_, in_[0] - image);
      f(image, images, image * positions_, images * positions_);
    }
  }
  // f(cols, first row, rows) with each chunk's columns of x (x itself for a 1×1 window at stride 1, in one chunk).
  template <class F>
  void each(const Tensor& x, F f) const {
    if (identity_window(w_)) return f(x.data(), int64_t{0}, in_[0] * positions_);
    Tensor cols = Tensor::empty({rows_per_chunk(), k_});
    const int64_t image_size = in_[1] * in_[2] * in_[3];
    each_range([&](int64_t image, int64_t images, int64_t row, int64_t rows) {
      im2col(x.data() + image * image_size, Shape{images, in_[1], in_[2], in_[3]}, w_, cols.data());
      f(static_cast<const float*>(cols.data()), row, rows);
    });
  }

 private:
  Shape in_;
  Window2d w_;
  int64_t k_, positions_, images_;
};
}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& kernel, const Tensor& bias, std::array<int64_t, 2> strides, Padding padding) {
  if (kernel.dim() != 4) fail("conv2d: expects a kernel [kh,kw,in,out], got ", kernel.shape().str());
  const Window2d w = window2d("conv2d", x.shape(), {kernel.size(0), kernel.size(1)}, strides, padding);
  const int64_t n = x.size(0), c = x.size(3), filters = kernel.size(3), m = n * w.out_h * w.out_w,
                k = w.kh * w.kw * c;
  if (kernel.size(2) != c)
    fail("conv2d: the kernel ", kernel.shape().str(), " takes ", kernel.size(2), " channels, the input has ", c);
  if (bias.defined() && !(bias.shape() == Shape{filters}))
    fail("conv2d: bias ", bias.shape().str(), " does not match ", filters, " filters");
  // x [N,H,W,C] → cols [M, K] (M = N·Ho·Wo, K = kh·kw·C); y [M, F] = cols · kernel[K, F] + bias: NHWC already.
  // cols is scratch, built a chunk of whole images at a time (ConvChunks): it stays in cache between im2col and
  // the product, and never costs more than a few MB, where whole-batch columns reach 0.2 GB a layer at batch 500.
  const ConvChunks chunks(x.shape(), w, k);
  Tensor y = Tensor::empty({n, w.out_h, w.out_w, filters});
  float* py = y.data();
  internal::parallel_for(m, filters, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      if (bias.defined()) std::copy_n(bias.data(), filters, py + r * filters);
      else std::fill_n(py + r * filters, filters, 0.0f);
  });
  chunks.each(x, [&](const float* cols, int64_t row, int64_t rows) {
    internal::gemm({cols, rows, k, false}, {kernel.data(), k, filters, false}, py + row * filters, true);
  });

  const auto backward = [w, m, k, filters, chunks](BackwardContext& ctx) {
    // With G = dy [M, F]:  dkernel = colsᵀ · G,  dcols = G · kernelᵀ → dx by col2im,  dbias = column sums of G.
    // Chunk by chunk in a fixed order, so the sums never depend on the thread count.
    const Tensor x = ctx.input(0), kernel = ctx.input(1), &g = ctx.grad_output();
    bool fresh = false;
    if (ctx.needs_grad(1)) {
      float* dk = ctx.grad_for_write(1, &fresh);
      bool accumulate = !fresh;
      chunks.each(x, [&](const float* cols, int64_t row, int64_t rows) {
        internal::gemm({cols, rows, k, true}, {g.data() + row * filters, rows, filters, false}, dk, accumulate);
        accumulate = true;
      });
      if (!accumulate) std::fill_n(dk, k * filters, 0.0f);  // an empty batch
    }
    if (ctx.needs_grad(0)) {
      float* dx = ctx.grad_for_write(0, &fresh);
      const internal::MatrixArg kernel_t{kernel.data(), k, filters, true};
      if (identity_window(w)) {
        internal::gemm({g.data(), m, filters, false}, kernel_t, dx, !fresh);
      } else {
        Tensor dcols = Tensor::empty({chunks.rows_per_chunk(), k});
        chunks.each_range([&](int64_t image, int64_t images, int64_t row, int64_t rows) {
          internal::gemm({g.data() + row * filters, rows, filters, false}, kernel_t, dcols.data(), false);
          const Shape& in = x.shape();
          col2im(dcols.data(), Shape{images, in[1], in[2], in[3]}, w, dx + image * in[1] * in[2] * in[3], !fresh);
        });
      }
    }
    if (ctx.num_inputs() == 3 && ctx.needs_grad(2)) {
      float* db = ctx.grad_for_write(2, &fresh);
      internal::bias_gradient(g.data(), m, filters, db, fresh);
    }
  };
  return bias.defined() ? record(y, "conv2d", {x, kernel, bias}, backward) : record(y, "conv2d", {x, kernel}, backward);
}

namespace {
// Calls f(out_index, n, oh, ow) over all output positions, threads taking rows of outputs (deterministic: each
// output is computed by one call).
template <class F>
void for_each_output(const Shape& in, const Window2d& w, int64_t cost, F f) {
  const int64_t rows = in[0] * w.out_h;
  internal::parallel_for(rows, w.out_w * cost, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t ow = 0; ow < w.out_w; ++ow) f((r * w.out_w + ow) * in[3], r / w.out_h, r % w.out_h, ow);
  });
}

// The window of output (oh, ow) clipped to the input: rows [i0, i1), columns [j0, j1).
struct Clip {
  int64_t i0, i1, j0, j1;
};
Clip clip(const Window2d& w, const Shape& in, int64_t oh, int64_t ow) {
  const int64_t top = oh * w.sh - w.pad_top, left = ow * w.sw - w.pad_left;
  return {std::max<int64_t>(top, 0), std::min(top + w.kh, in[1]), std::max<int64_t>(left, 0), std::min(left + w.kw, in[2])};
}
}  // namespace

Tensor max_pool2d(const Tensor& x, std::array<int64_t, 2> size, std::array<int64_t, 2> strides, Padding padding) {
  const Window2d w = window2d("max_pool2d", x.shape(), size, strides, padding);
  const Shape in = x.shape();
  const int64_t c = in[3];
  Tensor y = Tensor::empty({in[0], w.out_h, w.out_w, c});
  // Where each maximum came from: its position i·kw + j in the window, a small whole number held exactly in a
  // float tensor (so it comes from the same buffer cache as every other tensor).
  Tensor winner = Tensor::empty(y.shape());
  const float* px = x.data();
  float *py = y.data(), *pw = winner.data();
  // The maximum over the window's positions inside the input (padding never wins); NaN propagates, as in
  // PyTorch: a window holding NaN gives NaN. Ties go to the first position.
  for_each_output(in, w, w.kh * w.kw * c, [&](int64_t o, int64_t n, int64_t oh, int64_t ow) {
    const Clip r = clip(w, in, oh, ow);
    const int64_t top = oh * w.sh - w.pad_top, left = ow * w.sw - w.pad_left;
    float *out = py + o, *at = pw + o;
    for (int64_t q = 0; q < c; ++q) out[q] = -std::numeric_limits<float>::infinity(), at[q] = 0.0f;
    for (int64_t ih = r.i0; ih < r.i1; ++ih)
      for (int64_t iw = r.j0; iw < r.j1; ++iw) {
        const float* v = px + ((n * in[1] + ih) * in[2] + iw) * c;
        const float position = static_cast<float>((ih - top) * w.kw + (iw - left));
        for (int64_t q = 0; q < c; ++q)
          if ((v[q] > out[q] || std::isnan(v[q])) && !std::isnan(out[q])) out[q] = v[q], at[q] = position;
      }
  });
  // Which element wins is a branch, as relu's sign is: a watching gradcheck records the winners at the
  // unperturbed point and replays them, each output then taking the input at its recorded position.
  if (detail::KinkWatch* watch = detail::kink_watch()) {
    const std::vector<uint32_t>& b = watch->branches(y.numel(), [&](int64_t i) { return static_cast<uint32_t>(pw[i]); });
    if (watch->replaying())
      for_each_output(in, w, c, [&](int64_t o, int64_t n, int64_t oh, int64_t ow) {
        for (int64_t q = 0; q < c; ++q) {
          const auto position = static_cast<int64_t>(b[static_cast<size_t>(o + q)]);
          const int64_t ih = oh * w.sh - w.pad_top + position / w.kw, iw = ow * w.sw - w.pad_left + position % w.kw;
          py[o + q] = px[((n * in[1] + ih) * in[2] + iw) * c + q];
          pw[o + q] = static_cast<float>(position);
        }
      });
  }
  return record(y, "max_pool2d", {x}, [w, winner](BackwardContext& ctx) {
    // Each output's gradient goes to the input its maximum came from. Outputs of one image only reach that
    // image's inputs: threads take whole images and add in a fixed order.
    const Shape in = ctx.input(0).shape();
    const int64_t c = in[3];
    const float *g = ctx.grad_output().data(), *pw = winner.data();
    bool fresh = false;
    float* dx = ctx.grad_for_write(0, &fresh);
    const int64_t image = in[1] * in[2] * c;
    internal::parallel_for(in[0], w.out_h * w.out_w * c, [&](int64_t n0, int64_t n1) {
      for (int64_t n = n0; n < n1; ++n) {
        // A fresh gradient is zeroed here, an image at a time, while it is in this core's cache.
        if (fresh) std::fill_n(dx + n * image, image, 0.0f);
        for (int64_t oh = 0; oh < w.out_h; ++oh)
          for (int64_t ow = 0; ow < w.out_w; ++ow) {
            const int64_t o = ((n * w.out_h + oh) * w.out_w + ow) * c;
            const int64_t top = oh * w.sh - w.pad_top, left = ow * w.sw - w.pad_left;
            for (int64_t q = 0; q < c; ++q) {
              const auto position = static_cast<int64_t>(pw[o + q]);
              const int64_t ih = top + position / w.kw, iw = left + position % w.kw;
              dx[((n * in[1] + ih) * in[2] + iw) * c + q] += g[o + q];
            }
          }
      }
    });
  });
}

Tensor avg_pool2d(const Tensor& x, std::array<int64_t, 2> size, std::array<int64_t, 2> strides, Padding padding) {
  const Window2d w = window2d("avg_pool2d", x.shape(), size, strides, padding);
  const Shape in = x.shape();
  const int64_t c = in[3];
  Tensor y = Tensor::empty({in[0], w.out_h, w.out_w, c});
  const float* px = x.data();
  float* py = y.data();
  // The mean over the window's positions inside the input: padding is not counted (Keras, "same").
  for_each_output(in, w, w.kh * w.kw * c, [&](int64_t o, int64_t n, int64_t oh, int64_t ow) {
    const Clip r = clip(w, in, oh, ow);
    float* out = py + o;
    std::fill_n(out, c, 0.0f);
    for (int64_t ih = r.i0; ih < r.i1; ++ih)
      for (int64_t iw = r.j0; iw < r.j1; ++iw) {
        const float* v = px + ((n * in[1] + ih) * in[2] + iw) * c;
        for (int64_t q = 0; q < c; ++q) out[q] += v[q];
      }
    const float scale = 1.0f / static_cast<float>((r.i1 - r.i0) * (r.j1 - r.j0));
    for (int64_t q = 0; q < c; ++q) out[q] *= scale;
  });
  return record(y, "avg_pool2d", {x}, [w](BackwardContext& ctx) {
    // Each window position receives g / (positions in the window).
    const Shape in = ctx.input(0).shape();
    const int64_t c = in[3];
    const float* g = ctx.grad_output().data();
    bool fresh = false;
    float* dx = ctx.grad_for_write(0, &fresh);
    const int64_t image = in[1] * in[2] * c;
    internal::parallel_for(in[0], w.out_h * w.out_w * w.kh * w.kw * c, [&](int64_t n0, int64_t n1) {
      for (int64_t n = n0; n < n1; ++n) {
        if (fresh) std::fill_n(dx + n * image, image, 0.0f);  // as max pooling's
        for (int64_t oh = 0; oh < w.out_h; ++oh)
          for (int64_t ow = 0; ow < w.out_w; ++ow) {
            const Clip r = clip(w, in, oh, ow);
            const float scale = 1.0f / static_cast<float>((r.i1 - r.i0) * (r.j1 - r.j0));
            const float* go = g + ((n * w.out_h + oh) * w.out_w + ow) * c;
            for (int64_t ih = r.i0; ih < r.i1; ++ih)
              for (int64_t iw = r.j0; iw < r.j1; ++iw) {
                float* d = dx + ((n * in[1] + ih) * in[2] + iw) * c;
                for (int64_t q = 0; q < c; ++q) d[q] += go[q] * scale;
              }
          }
      }
    });
  });
}

}  // namespace minidl
