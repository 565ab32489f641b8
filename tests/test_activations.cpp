// Tests of the activation layers tanh, gelu, silu and leaky_relu: Keras's formulas against values computed from
// them in double precision (docs/keras.md, "Activations"), their gradients, and their kinds in the grammar.
#include <cmath>

#include "helpers.h"
#include "minidl/nn.h"

using namespace minidl;
using minidl::test::require_grad_ok;
using minidl::test::require_values;

namespace {
// The points the reference values below were computed at (Python's math.tanh, math.erf and math.exp).
Tensor points() { return Tensor::from({6}, {-3.0f, -1.5f, -0.25f, 0.0f, 0.4f, 2.0f}); }

// d sum(f(x)) / dx at the points.
std::vector<float> derivative(Tensor (*f)(const Tensor&)) {
  Tensor x = points();
  x.set_requires_grad(true);
  sum(f(x)).backward();
  const Tensor g = x.grad();
  return {g.values().begin(), g.values().end()};
}
}  // namespace

TEST_CASE("tanh, gelu, silu and leaky_relu follow Keras's formulas", "[activations]") {
  require_values(Tanh()(points()), {6}, {-0.995054754f, -0.905148254f, -0.244918662f, 0.0f, 0.379948962f, 0.96402758f});
  // gelu(x) = x/2 · (1 + erf(x/√2)), Keras's default approximate = False.
  require_values(GELU()(points()), {6}, {-0.00404969409f, -0.100210802f, -0.100323419f, 0.0f, 0.262168697f, 1.95449974f});
  // silu(x) = x · sigmoid(x).
  require_values(SiLU()(points()), {6}, {-0.14227762f, -0.273638286f, -0.109455875f, 0.0f, 0.239475064f, 1.76159416f});
  // LeakyReLU's default alpha is Keras's 0.3.
  require_values(LeakyReLU()(points()), {6}, {-0.9f, -0.45f, -0.075f, 0.0f, 0.4f, 2.0f});
  require_values(LeakyReLU(0.01f)(points()), {6}, {-0.03f, -0.015f, -0.0025f, 0.0f, 0.4f, 2.0f});
  // Far out, no overflow: gelu(-30) and silu(-100) are 0 and the large positives themselves.
  require_values(gelu(Tensor::from({2}, {-30.0f, 30.0f})), {2}, {0.0f, 30.0f});
  require_values(silu(Tensor::from({2}, {-100.0f, 100.0f})), {2}, {0.0f, 100.0f}, 1e-5f);
}

TEST_CASE("the activations' derivatives are the formulas' (Φ(x) + x·φ(x), s·(1 + x·(1 − s)))", "[activations]") {
  const std::vector<float> dgelu = derivative(gelu), dsilu = derivative(silu), dtanh = derivative(tanh);
  const std::vector<float> gelu_expected = {-0.0119456472f, -0.127469192f, 0.304626645f, 0.5f, 0.802729798f, 1.0852318f};
  const std::vector<float> silu_expected = {-0.088104106f, -0.0412941543f, 0.376289978f, 0.5f, 0.694791958f, 1.09078425f};
  const Tensor points_tensor = points();
  const std::span<const float> x = points_tensor.values();
  for (size_t i = 0; i < x.size(); ++i) {
    INFO("x = " << x[i]);
    CHECK(dgelu[i] == Approx(gelu_expected[i]).margin(1e-6));
    CHECK(dsilu[i] == Approx(silu_expected[i]).margin(1e-6));
    CHECK(dtanh[i] == Approx(1.0 - std::tanh(double(x[i])) * std::tanh(double(x[i]))).margin(1e-6));
  }
  // LeakyReLU: 1 above 0, alpha at 0 and below (TensorFlow's LeakyReluGrad).
  Tensor p = points();
  p.set_requires_grad(true);
  sum(leaky_relu(p, 0.2f)).backward();
  require_values(p.grad(), {6}, {0.2f, 0.2f, 0.2f, 0.2f, 1.0f, 1.0f});
}

TEST_CASE("the activations grad-check, leaky_relu across its kink too", "[activations]") {
  const Tensor x = test::param({3, 5}, 11);
  require_grad_ok([](const auto& v) { return tanh(v[0]); }, {x});
  require_grad_ok([](const auto& v) { return gelu(v[0]); }, {x});
  require_grad_ok([](const auto& v) { return silu(v[0]); }, {x});
  // Values within a finite-difference step of 0: the replayed branch keeps the check on one side.
  Tensor near = Tensor::from({4}, {-0.004f, 0.003f, -1.0f, 0.7f});
  near.set_requires_grad(true);
  require_grad_ok([](const auto& v) { return leaky_relu(v[0], 0.3f); }, {near});
}

TEST_CASE("activation kinds in a description: names, options and bad values", "[activations]") {
  ModelConfig c;
  c.description = "dense:8,tanh,dense:8,gelu,dense:8,silu,dense:8,leaky_relu:alpha=0.1,dense:8,swish,leaky_re_lu,dense:2,softmax";
  c.input_shape = {4};
  c.classes = 2;
  const auto model = build_model(c);
  std::vector<std::string> names, types;
  for (const auto& layer : model->children()) names.push_back(layer->name()), types.push_back(layer->type_name());
  CHECK(names == std::vector<std::string>{"dense", "tanh", "dense_1", "gelu", "dense_2", "silu", "dense_3", "leaky_re_lu",
                                          "dense_4", "silu_1", "leaky_re_lu_1", "dense_5", "softmax"});
  CHECK(types[3] == "GELU");
  CHECK(dynamic_cast<const LeakyReLU&>(*model->children()[7]).alpha() == 0.1f);
  CHECK(dynamic_cast<const LeakyReLU&>(*model->children()[10]).alpha() == 0.3f);
  CHECK(model->summary().find("alpha 0.1") != std::string::npos);

  const auto refused = [&](const std::string& description, const std::string& words) {
    ModelConfig bad = c;
    bad.description = description;
    INFO(description);
    REQUIRE_THROWS_WITH(build_model(bad), Catch::Contains(words));
  };
  refused("dense:8,leaky_relu:alpha=-0.5,dense:2,softmax", "layer 2 'leaky_relu:alpha=-0.5'");
  refused("dense:8,leaky_relu:alpha=x,dense:2,softmax", "alpha");
  refused("dense:8,tanh:3,dense:2,softmax", "tanh");
  refused("dense:8,gelu:approximate=1,dense:2,softmax", "approximate");
  REQUIRE_THROWS_WITH(LeakyReLU(-1.0f), Catch::Contains("alpha must be finite and >= 0"));
  REQUIRE_THROWS_WITH(leaky_relu(points(), NAN), Catch::Contains("alpha must be finite and >= 0"));
}
