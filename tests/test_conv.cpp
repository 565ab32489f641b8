// Tests of convolution and pooling: values against direct loops in double, gradients by finite differences
// (strided, same-padded, and at shapes that take the threaded paths), byte identity across thread counts,
// BatchNormalization on images fused vs composed, the layers, and the CNN from its description.
#include <cmath>
#include <limits>

#include "helpers.h"
#include "minidl/nn.h"
#include "minidl/train.h"

using namespace minidl;
using minidl::test::param;
using minidl::test::require_grad_ok;
using minidl::test::with_threads;
using Inputs = std::vector<Tensor>;

namespace {
// The convolution by its definition, in double: y[n,oh,ow,f] = b[f] + Σ x[n, oh·s+i−top, ow·s+j−left, c]·k[i,j,c,f].
std::vector<double> direct_conv(const Tensor& x, const Tensor& k, const Tensor& b, std::array<int64_t, 2> s, Padding p) {
  const Window2d w = window2d("test", x.shape(), {k.size(0), k.size(1)}, s, p);
  const int64_t n = x.size(0), h = x.size(1), wd = x.size(2), c = x.size(3), f = k.size(3);
  std::vector<double> y(static_cast<size_t>(n * w.out_h * w.out_w * f));
  for (int64_t a = 0; a < n; ++a)
    for (int64_t oh = 0; oh < w.out_h; ++oh)
      for (int64_t ow = 0; ow < w.out_w; ++ow)
        for (int64_t q = 0; q < f; ++q) {
          double sum = b.defined() ? b.data()[q] : 0.0;
          for (int64_t i = 0; i < w.kh; ++i)
            for (int64_t j = 0; j < w.kw; ++j) {
              const int64_t ih = oh * w.sh + i - w.pad_top, iw = ow * w.sw + j - w.pad_left;
              if (ih < 0 || ih >= h || iw < 0 || iw >= wd) continue;
              for (int64_t r = 0; r < c; ++r)
                sum += double(x.data()[((a * h + ih) * wd + iw) * c + r]) * k.data()[((i * w.kw + j) * c + r) * f + q];
            }
          y[static_cast<size_t>(((a * w.out_h + oh) * w.out_w + ow) * f + q)] = sum;
        }
  return y;
}

void require_close(const Tensor& t, const std::vector<double>& expected, double tolerance) {
  REQUIRE(t.numel() == static_cast<int64_t>(expected.size()));
  for (int64_t i = 0; i < t.numel(); ++i) {
    INFO("element " << i);
    REQUIRE(t.data()[i] == Approx(expected[static_cast<size_t>(i)]).margin(tolerance));
  }
}

}  // namespace

TEST_CASE("conv2d equals the direct convolution: valid, same, strided, rectangular, with and without bias", "[conv]") {
  struct Case {
    Shape x, k;
    std::array<int64_t, 2> s;
    Padding p;
    bool bias;
  };
  for (const Case& c : std::vector<Case>{{{2, 7, 6, 3}, {3, 3, 3, 4}, {1, 1}, Padding::valid, true},
                                         {{2, 7, 6, 3}, {3, 3, 3, 4}, {1, 1}, Padding::same, false},
                                         {{1, 9, 8, 2}, {3, 2, 2, 5}, {2, 3}, Padding::same, true},
                                         {{1, 9, 8, 2}, {4, 4, 2, 3}, {2, 2}, Padding::valid, true},
                                         {{3, 5, 5, 4}, {1, 1, 4, 6}, {1, 1}, Padding::valid, true}}) {
    INFO("x " << c.x.str() << " kernel " << c.k.str());
    const Tensor x = param(c.x, 1), k = param(c.k, 2), b = c.bias ? param({c.k[3]}, 3) : Tensor();
    require_close(conv2d(x, k, b, c.s, c.p), direct_conv(x, k, b, c.s, c.p), 1e-5);
  }
  // Keras's "same": ceil(size / stride) outputs, the extra padding after.
  CHECK(conv2d(Tensor::zeros({1, 28, 28, 1}), Tensor::zeros({3, 3, 1, 2}), Tensor(), {2, 2}, Padding::same).shape() ==
        Shape{1, 14, 14, 2});
  CHECK_THROWS_WITH(conv2d(Tensor::zeros({1, 2, 2, 1}), Tensor::zeros({3, 3, 1, 1}), Tensor()),
                    "conv2d: window 3x3 is larger than the 2x2 input (padding valid) — use padding same or a smaller window");
  CHECK_THROWS_WITH(conv2d(Tensor::zeros({1, 4, 4, 2}), Tensor::zeros({3, 3, 1, 1}), Tensor()),
                    "conv2d: the kernel [3,3,1,1] takes 1 channels, the input has 2");
  CHECK_THROWS_WITH(conv2d(Tensor::zeros({1, 4, 4, 1}), Tensor::zeros({3, 3, 1, 1}), Tensor(), {0, 1}),
                    Catch::Contains("strides 0x1 must be >= 1"));
}

TEST_CASE("conv2d gradients by finite differences: strided, same-padded, 1x1, and threaded shapes", "[conv]") {
  // A large shape is checked on a sample of elements, with a larger step: the convolution is linear in each
  // input (no truncation error), and the float32 rounding of thousands of outputs that one kernel element moves
  // needs a step that dwarfs it.
  GradcheckOptions sampled;
  sampled.max_elements = 24;
  sampled.eps = 0.1;
  for (const auto& [xs, ks, s, p] : std::vector<std::tuple<Shape, Shape, std::array<int64_t, 2>, Padding>>{
           {{2, 5, 5, 2}, {3, 3, 2, 3}, {1, 1}, Padding::valid},
           {{2, 6, 5, 2}, {3, 2, 2, 2}, {2, 2}, Padding::same},
           {{2, 4, 4, 3}, {1, 1, 3, 2}, {1, 1}, Padding::valid}}) {
    INFO("x " << xs.str() << " kernel " << ks.str());
    require_grad_ok([&](const Inputs& v) { return conv2d(v[0], v[1], v[2], s, p); },
                    {param(xs, 4), param(ks, 5), param({ks[3]}, 6)});
  }
  // Above the thresholds: im2col and col2im split over threads, the products through the packed GEMM.
  require_grad_ok([](const Inputs& v) { return conv2d(v[0], v[1], v[2], {1, 1}, Padding::same); },
                  {param({16, 20, 20, 8}, 7), param({3, 3, 8, 32}, 8), param({32}, 9)}, sampled);
}

TEST_CASE("max and average pooling: values, NaN propagation, ties, padding not counted, gradients", "[conv]") {
  const Tensor x = Tensor::from({1, 3, 3, 1}, {1, 5, 2, 7, 3, 9, 4, 8, 6});
  test::require_values(max_pool2d(x, {2, 2}, {1, 1}), {1, 2, 2, 1}, {7, 9, 8, 9});
  test::require_values(avg_pool2d(x, {2, 2}, {1, 1}), {1, 2, 2, 1}, {4, 4.75f, 5.5f, 6.5f});
  // "same" with stride 2 on 3x3: 2x2 outputs; the bottom-right window holds one position: padding not counted.
  test::require_values(avg_pool2d(x, {2, 2}, {2, 2}, Padding::same), {1, 2, 2, 1}, {4, 5.5f, 6, 6});
  test::require_values(max_pool2d(x, {2, 2}, {2, 2}, Padding::same), {1, 2, 2, 1}, {7, 9, 8, 6});
  Tensor with_nan = x.clone();
  with_nan.data()[4] = std::numeric_limits<float>::quiet_NaN();
  const Tensor pooled_nan = max_pool2d(with_nan, {2, 2}, {1, 1});
  for (float v : pooled_nan.values()) CHECK(std::isnan(v));
  // A tie sends the gradient to the first maximum only.
  Tensor tie = Tensor::from({1, 1, 2, 1}, {3, 3}).set_requires_grad();
  max_pool2d(tie, {1, 2}, {1, 1}).backward(Tensor::ones({1, 1, 1, 1}));
  test::require_values(tie.grad(), {1, 1, 2, 1}, {1, 0});
  CHECK_THROWS_WITH(max_pool2d(Tensor::zeros({1, 1, 1, 1}), {2, 2}, {2, 2}), Catch::Contains("is larger than the 1x1 input"));
  // Gradients: inputs spread apart so no finite-difference step changes which element wins.
  Tensor spread = Tensor::empty({2, 6, 5, 3});
  Generator gen(3);
  std::vector<int32_t> order = gen.permutation(static_cast<int32_t>(spread.numel()));
  for (int64_t i = 0; i < spread.numel(); ++i) spread.data()[i] = 0.1f * static_cast<float>(order[static_cast<size_t>(i)]);
  spread.set_requires_grad();
  for (Padding p : {Padding::valid, Padding::same}) {
    require_grad_ok([p](const Inputs& v) { return max_pool2d(v[0], {2, 3}, {2, 1}, p); }, {spread});
    require_grad_ok([p](const Inputs& v) { return avg_pool2d(v[0], {3, 2}, {2, 2}, p); }, {spread});
  }
}

TEST_CASE("conv2d over a batch wider than one chunk of im2col columns equals it image by image", "[conv]") {
  // conv2d builds its columns a few MB of whole images at a time: 40 images of 20x20x8 under a 3x3 kernel
  // (115 KB of columns each) make chunks of 36 and 4. Values against the direct convolution; each image's
  // input gradient, and the kernel and bias gradients summed over the images, against one image at a time.
  const Shape one{1, 20, 20, 8};
  const int64_t images = 40, image_size = one.numel();
  const Tensor x = param({images, 20, 20, 8}, 21), k = param({3, 3, 8, 4}, 22), b = param({4}, 23);
  const Tensor upstream = Tensor::uniform({images, 20, 20, 4}, -1, 1);
  const Tensor y = conv2d(x, k, b, {1, 1}, Padding::same);
  require_close(y, direct_conv(x, k, b, {1, 1}, Padding::same), 1e-4);
  y.backward(upstream);
  std::vector<double> dk(static_cast<size_t>(k.numel())), db(4);
  for (int64_t i = 0; i < images; ++i) {
    INFO("image " << i);
    const Tensor xi = Tensor::from(one, {x.data() + i * image_size, static_cast<size_t>(image_size)});
    const Tensor ki = Tensor::from(k.shape(), {k.data(), static_cast<size_t>(k.numel())});
    const Tensor bi = Tensor::from(b.shape(), {b.data(), 4});
    for (Tensor t : {xi, ki, bi}) t.set_requires_grad(true);
    conv2d(xi, ki, bi, {1, 1}, Padding::same)
        .backward(Tensor::from({1, 20, 20, 4}, {upstream.data() + i * 1600, size_t{1600}}));
    for (int64_t e = 0; e < image_size; ++e) REQUIRE(x.grad().data()[i * image_size + e] == Approx(xi.grad().data()[e]).margin(1e-5));
    for (int64_t e = 0; e < k.numel(); ++e) dk[static_cast<size_t>(e)] += ki.grad().data()[e];
    for (int64_t e = 0; e < 4; ++e) db[static_cast<size_t>(e)] += bi.grad().data()[e];
  }
  require_close(k.grad(), dk, 1e-3);
  require_close(b.grad(), db, 1e-3);
}

TEST_CASE("convolution and pooling give the same bytes on one thread and two", "[conv]") {
  const Tensor x = param({32, 26, 26, 8}, 11), k = param({3, 3, 8, 16}, 12), b = param({16}, 13);
  const Tensor upstream = Tensor::uniform({32, 12, 12, 16}, -1, 1);
  const auto run = [&] {
    for (Tensor t : {x, k, b}) t.zero_grad();
    const Tensor y = avg_pool2d(max_pool2d(conv2d(x, k, b), {2, 2}, {2, 2}), {1, 1}, {1, 1});
    y.backward(upstream);
    std::vector<float> all = y.to_vector();
    for (const Tensor& t : {x, k, b}) all.insert(all.end(), t.grad().data(), t.grad().data() + t.numel());
    return all;
  };
  CHECK(with_threads(1, run) == with_threads(2, run));
}

TEST_CASE("BatchNormalization on images normalises per channel over N, H, W: fused equals composed", "[conv]") {
  const Tensor x = param({4, 5, 3, 6}, 21), gamma = param({6}, 22), beta = param({6}, 23);
  const Tensor upstream = Tensor::uniform({4, 5, 3, 6}, -1, 1);
  Tensor mean, variance;
  const Tensor fused = batch_norm_train(x, gamma, beta, 1e-3f, mean, variance);
  fused.backward(upstream);
  const std::vector<float> dx = x.grad().to_vector(), dg = gamma.grad().to_vector(), db = beta.grad().to_vector();
  for (Tensor t : {x, gamma, beta}) t.zero_grad();
  const auto [m, v] = moments(x, {0, 1, 2});
  const Tensor composed = batch_normalization(x, m, v, beta, gamma, 1e-3f);
  composed.backward(upstream);
  test::require_values(fused, x.shape(), composed.to_vector(), 1e-5f);
  test::require_values(mean, {6}, m.to_vector(), 1e-6f);
  test::require_values(variance, {6}, v.to_vector(), 1e-6f);
  test::require_values(x.grad(), x.shape(), dx, 1e-5f);
  test::require_values(gamma.grad(), {6}, dg, 1e-4f);
  test::require_values(beta.grad(), {6}, db, 1e-4f);
  // The layer in manual mode is moments over [0, 1, 2] + batch_normalization, and one image suffices.
  MomentsNormalization manual(6);
  manual.gamma().copy_(gamma);
  manual.beta().copy_(beta);
  CHECK(manual.min_training_batch({1, 5, 3, 6}) == 1);
  test::require_values(manual(x), x.shape(), composed.to_vector(), 1e-5f);
}

TEST_CASE("the CNN from its description: Keras's shapes, names, parameter count and errors", "[conv]") {
  ModelConfig c;
  c.description = "conv:32x3,bn,relu,maxpool:2,conv:64x3,bn,relu,maxpool:2,flatten,dense:10,softmax";
  const auto model = build_model(c);
  CHECK(model->input_shape() == Shape{28, 28, 1});  // a model starting with conv takes images
  CHECK(model->output_shape({7, 784}) == Shape{7, 10});
  CHECK_THAT(model->summary(), Catch::Contains("conv2d_1 (Conv2D)") && Catch::Contains("(None, 5, 5, 64)") &&
                                   Catch::Contains("Total params: 35,210"));
  const Conv2D& conv = dynamic_cast<Conv2D&>(*model->children()[0]);
  const float limit = std::sqrt(6.0f / (9 * (1 + 32)));
  for (float v : const_cast<Conv2D&>(conv).kernel().values()) REQUIRE(std::abs(v) <= limit);
  CHECK(model->min_training_batch({1, 784}) == 1);  // batch statistics over H and W: one image suffices
  CHECK(model->training_product_flops({1, 784}) == Approx(2 * (2.0 * 676 * 9 * 32) + 3 * (2.0 * 121 * 288 * 64) +
                                                          3 * (2.0 * 1600 * 10)));
  const auto error = [&](const std::string& d) {
    c.description = d;
    try {
      build_model(c);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  // 28 → 24 → 12 (pool) → 8 → 4: a fifth 5x5 kernel no longer fits.
  CHECK_THAT(error("conv:8x5,maxpool:2,conv:8x5,conv:8x5,conv:8x5,flatten,dense:10,softmax"),
             Catch::Contains("layer 5 'conv:8x5' on input [4,4,8]") && Catch::Contains("window 5x5 is larger than the 4x4 input"));
  {  // The window is checked before its kernel (80·4096² floats, 5 GB) is allocated.
    const AllocationLimit limit(int64_t{1} << 20, "the kernel was allocated before its window was checked");
    CHECK_THAT(error("conv:80x4096,flatten,dense:10,softmax"),
               Catch::Contains("layer 1 'conv:80x4096' on input [28,28,1]") &&
                   Catch::Contains("window 4096x4096 is larger than the 28x28 input"));
  }
  CHECK_THAT(error("conv:8x3:strides=0,flatten,dense:10,softmax"), Catch::Contains("strides must be N or HxW"));
  CHECK_THAT(error("conv:8x3,flatten,conv:8x3,dense:10,softmax"),
             Catch::Contains("layer 3 'conv:8x3' on input [5408]") && Catch::Contains("convolution and pooling go before flatten"));
  CHECK_THAT(error("conv:8x3,dense:10,softmax"),
             Catch::Contains("layer 2 'dense:10' on input [26,26,8]") && Catch::Contains("add flatten before it"));
  CHECK_THAT(error("conv:8x3:padding=full,flatten,dense:10,softmax"), Catch::Contains("padding must be valid or same"));
}

TEST_CASE("a small CNN learns the synthetic set in every mode, same-padded and strided, with GAP", "[conv]") {
  const DatasetSplits data = make_synthetic(1500, 200, 5);
  for (const std::string mode : {"running", "manual"}) {
    INFO(mode);
    ModelConfig c;
    c.description = "conv:8x3:padding=same,bn,relu,maxpool:2,conv:16x3:strides=2,bn,relu,gap,dense:10,softmax";
    c.norm = mode;
    c.norm_options["momentum"] = 0.9;  // a short run: moving statistics that follow within ~10 steps
    const auto model = build_model(c);
    Adam adam(model->parameters(), {.learning_rate = 0.005f});
    const auto history = fit(*model, adam, data.train, {.epochs = 6, .batch_size = 32});
    INFO("training accuracy " << history.back().accuracy);
    CHECK(history.back().accuracy > 0.9);
    CHECK(evaluate(*model, data.test, 50).accuracy > 0.85);
  }
}
