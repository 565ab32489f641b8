// Tests of autodiff: a finite-difference check of every differentiable op, accumulation, fan-out,
// broadcasting, graph lifetime, grad mode, and the shape errors every op raises.
#include <algorithm>

#include "helpers.h"

using namespace minidl;
using minidl::test::param;
using minidl::test::param_away_from;
using minidl::test::require_grad_ok;
using minidl::test::require_values;
using Inputs = std::vector<Tensor>;

TEST_CASE("grad of binary ops with equal shapes", "[autograd]") {
  const Tensor a = param({3, 4}, 1), b = param({3, 4}, 2, 0.5f, 2.0f);
  require_grad_ok([](const Inputs& x) { return x[0] + x[1]; }, {a, b});
  require_grad_ok([](const Inputs& x) { return x[0] - x[1]; }, {a, b});
  require_grad_ok([](const Inputs& x) { return x[0] * x[1]; }, {a, b});
  require_grad_ok([](const Inputs& x) { return x[0] / x[1]; }, {a, b});
}

TEST_CASE("grad of binary ops with broadcasting sums over broadcast axes", "[autograd]") {
  const Tensor m = param({4, 3}, 1), row = param({3}, 2, 0.5f, 2.0f), col = param({4, 1}, 3, 0.5f, 2.0f);
  const Tensor s = param({}, 4, 0.5f, 2.0f), cube = param({2, 4, 3}, 5);
  for (const Tensor& other : {row, col, s}) {
    require_grad_ok([](const Inputs& x) { return x[0] + x[1]; }, {m, other});
    require_grad_ok([](const Inputs& x) { return x[0] - x[1]; }, {m, other});
    require_grad_ok([](const Inputs& x) { return x[0] * x[1]; }, {m, other});
    require_grad_ok([](const Inputs& x) { return x[0] / x[1]; }, {m, other});
    require_grad_ok([](const Inputs& x) { return x[1] / x[0]; }, {param({4, 3}, 6, 0.5f, 2.0f), other});
  }
  require_grad_ok([](const Inputs& x) { return x[0] * x[1]; }, {cube, col});  // [2,4,3] x [4,1]
  // The gradient of a broadcast row is the column sum of the upstream gradient.
  Tensor bias = Tensor::zeros({3}).set_requires_grad();
  (Tensor::ones({4, 3}) + bias).backward(Tensor::ones({4, 3}));
  require_values(bias.grad(), {3}, {4, 4, 4});
}

TEST_CASE("grad of keepdims reductions against their source", "[autograd]") {
  const Tensor x = param({5, 3}, 1);
  require_grad_ok([](const Inputs& v) { return v[0] - mean(v[0], {0}, true); }, {x});
  require_grad_ok([](const Inputs& v) { return v[0] / sum(exp(v[0]), {1}, true); }, {x});
}

TEST_CASE("grad of maximum, relu and clip away from their kinks", "[autograd]") {
  const Tensor a = param_away_from({3, 4}, 1, {0.0f}), b = param({3, 4}, 2);
  Tensor b_apart = b.clone().set_requires_grad();
  for (int64_t i = 0; i < a.numel(); ++i)
    if (std::abs(a.data()[i] - b.data()[i]) < 0.05f) b_apart.data()[i] = a.data()[i] + 0.1f;
  require_grad_ok([](const Inputs& x) { return maximum(x[0], x[1]); }, {a, b_apart});
  require_grad_ok([](const Inputs& x) { return maximum(x[0], Tensor::scalar(0.0f)); }, {a});
  require_grad_ok([](const Inputs& x) { return relu(x[0]); }, {a});
  require_grad_ok([](const Inputs& x) { return clip(x[0], -0.5f, 0.5f); },
                  {param_away_from({3, 4}, 3, {-0.5f, 0.5f})});
  // Ties send the gradient to the first operand, as TensorFlow does.
  Tensor p = Tensor::from({2}, {1, 2}).set_requires_grad(), q = Tensor::from({2}, {1, 3}).set_requires_grad();
  maximum(p, q).backward(Tensor::ones({2}));
  require_values(p.grad(), {2}, {1, 0});
  require_values(q.grad(), {2}, {0, 1});
}

TEST_CASE("grad of unary ops", "[autograd]") {
  const Tensor x = param({3, 4}, 1), positive = param({3, 4}, 2, 0.5f, 2.0f);
  require_grad_ok([](const Inputs& v) { return -v[0]; }, {x});
  require_grad_ok([](const Inputs& v) { return exp(v[0]); }, {x});
  require_grad_ok([](const Inputs& v) { return log(v[0]); }, {positive});
  require_grad_ok([](const Inputs& v) { return sqrt(v[0]); }, {positive});
  require_grad_ok([](const Inputs& v) { return rsqrt(v[0]); }, {positive});
  require_grad_ok([](const Inputs& v) { return square(v[0]); }, {x});
  require_grad_ok([](const Inputs& v) { return pow(v[0], 3.0f); }, {x});
  require_grad_ok([](const Inputs& v) { return pow(v[0], -1.5f); }, {positive});
  require_grad_ok([](const Inputs& v) { return v[0] * 3.0f + 2.0f; }, {x});
  require_grad_ok([](const Inputs& v) { return 1.0f / v[0] - 2.0f; }, {positive});
}

TEST_CASE("grad of sum and mean over all axes, some axes, keepdims", "[autograd]") {
  const Tensor x = param({2, 3, 4}, 1);
  require_grad_ok([](const Inputs& v) { return sum(v[0]); }, {x});
  require_grad_ok([](const Inputs& v) { return mean(v[0]); }, {x});
  require_grad_ok([](const Inputs& v) { return sum(v[0], {1}); }, {x});
  require_grad_ok([](const Inputs& v) { return mean(v[0], {-1}, true); }, {x});
  require_grad_ok([](const Inputs& v) { return sum(v[0], {0, 2}); }, {x});  // not contiguous
  require_grad_ok([](const Inputs& v) { return mean(v[0], {0, 1}, true); }, {x});
}

TEST_CASE("sum and mean values", "[autograd]") {
  const Tensor x = Tensor::from({2, 3}, {1, 2, 3, 4, 5, 6});
  require_values(sum(x), {}, {21});
  require_values(mean(x), {}, {3.5f});
  require_values(sum(x, {0}), {3}, {5, 7, 9});
  require_values(mean(x, {1}, true), {2, 1}, {2, 5});
  require_values(sum(reshape(x, {1, 2, 3}), {0, 2}), {2}, {6, 15});
  CHECK_THROWS_WITH(sum(x, {2}), "sum: axis 2 is out of range for shape [2,3]");
  CHECK_THROWS_WITH(mean(x, {0, -2}), "mean: axis -2 is repeated");
}

TEST_CASE("grad of matmul with every transpose combination", "[autograd]") {
  const Tensor a = param({3, 4}, 1), b = param({4, 5}, 2), at = param({4, 3}, 3), bt = param({5, 4}, 4);
  require_grad_ok([](const Inputs& x) { return matmul(x[0], x[1]); }, {a, b});
  require_grad_ok([](const Inputs& x) { return matmul(x[0], x[1], true, false); }, {at, b});
  require_grad_ok([](const Inputs& x) { return matmul(x[0], x[1], false, true); }, {a, bt});
  require_grad_ok([](const Inputs& x) { return matmul(x[0], x[1], true, true); }, {at, bt});
  require_values(matmul(Tensor::from({2, 2}, {1, 2, 3, 4}), Tensor::from({2, 1}, {5, 6})), {2, 1}, {17, 39});
  require_values(matmul(Tensor::from({2, 2}, {1, 2, 3, 4}), Tensor::from({2, 1}, {5, 6}), true), {2, 1}, {23, 34});
}

TEST_CASE("grad of reshape and transpose", "[autograd]") {
  const Tensor x = param({2, 3, 4}, 1);
  const Tensor w = param({2, 12}, 2);
  require_grad_ok([](const Inputs& v) { return reshape(v[0], {-1, 6}) * reshape(v[1], {4, 6}); }, {x, w});
  require_grad_ok([](const Inputs& v) { return transpose(v[0]); }, {x});
  require_grad_ok([](const Inputs& v) { return transpose(v[0], 0, 2); }, {x});
  const Tensor t = transpose(Tensor::from({2, 3}, {1, 2, 3, 4, 5, 6}));
  require_values(t, {3, 2}, {1, 4, 2, 5, 3, 6});
  CHECK_THROWS_WITH(reshape(x, {5, -1}), "reshape: cannot reshape [2,3,4] (24 values) into [5,-1]");
  CHECK_THROWS_WITH(transpose(x, 0, 3), "transpose: axes 0 and 3 are out of range for shape [2,3,4]");
}

TEST_CASE("grad of softmax, log_softmax and gather", "[autograd]") {
  const Tensor x = param({4, 5}, 1, -3.0f, 3.0f);
  require_grad_ok([](const Inputs& v) { return softmax(v[0]); }, {x});
  require_grad_ok([](const Inputs& v) { return log_softmax(v[0]); }, {x});
  const std::vector<int32_t> labels{0, 4, 2, 4};
  require_grad_ok([&](const Inputs& v) { return gather(log_softmax(v[0]), labels); }, {x});
  // Stable: huge logits neither overflow nor lose the answer.
  const Tensor big = Tensor::from({1, 3}, {1000.0f, 1001.0f, 1002.0f});
  const Tensor p = softmax(big), lp = log_softmax(big);
  require_values(p, {1, 3}, {0.09003057f, 0.24472847f, 0.66524096f}, 1e-6f);
  require_values(lp, {1, 3}, {-2.40760596f, -1.40760596f, -0.40760596f}, 1e-5f);
  require_values(one_hot(labels, 5), {4, 5}, {1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1});
  CHECK_THROWS_WITH(one_hot(labels, 4), "one_hot: label 4 at index 1 is out of range for 4 classes");
  CHECK_THROWS_WITH(gather(x, std::vector<int32_t>{1}), "gather: 1 labels for x of shape [4,5] (need one per row)");
}

TEST_CASE("grad with fan-out accumulates: x*x, x+x", "[autograd]") {
  const Tensor x = param({3}, 1);
  require_grad_ok([](const Inputs& v) { return v[0] * v[0]; }, {x});
  require_grad_ok([](const Inputs& v) { return v[0] + v[0]; }, {x});
  require_grad_ok([](const Inputs& v) { return exp(v[0]) * v[0] - v[0]; }, {x});
  Tensor y = Tensor::from({2}, {3, -1}).set_requires_grad();
  (y * y + y).backward(Tensor::ones({2}));
  require_values(y.grad(), {2}, {7, -1});
}

TEST_CASE("grad of a small composed MLP with softmax cross-entropy", "[autograd]") {
  // Finite differences across a ReLU kink are meaningless: take the first seed whose hidden pre-activations
  // all stay at least 0.05 away from zero.
  Tensor x, w1, b1;
  for (uint64_t seed = 1;; seed += 3) {
    x = param({6, 5}, seed), w1 = param({5, 4}, seed + 1), b1 = param({4}, seed + 2);
    const NoGradGuard no_grad;
    const Tensor z = matmul(x, w1) + b1;
    if (std::all_of(z.values().begin(), z.values().end(), [](float v) { return std::abs(v) > 0.05f; })) break;
  }
  const Tensor w2 = param({4, 3}, 100), b2 = param({3}, 101);
  const std::vector<int32_t> labels{0, 1, 2, 2, 1, 0};
  require_grad_ok(
      [&](const Inputs& p) {
        const Tensor h = relu(matmul(p[0], p[1]) + p[2]);
        const Tensor logits = matmul(h, p[3]) + p[4];
        return -mean(gather(log_softmax(logits), labels));
      },
      {x, w1, b1, w2, b2});
}

TEST_CASE("gradients accumulate across backward calls until zero_grad", "[autograd]") {
  Tensor w = Tensor::from({2}, {1, 2}).set_requires_grad();
  sum(w * 3.0f).backward();
  sum(w * 3.0f).backward();
  require_values(w.grad(), {2}, {6, 6});
  w.zero_grad();
  CHECK_FALSE(w.grad().defined());
  sum(square(w)).backward();
  require_values(w.grad(), {2}, {2, 4});
}

TEST_CASE("the graph is freed after backward and when handles go out of scope", "[autograd]") {
  const int64_t before = live_graph_nodes();
  Tensor w = param({4, 3}, 1);
  {
    Tensor loss = sum(relu(matmul(param({2, 4}, 2), w)) * 2.0f);
    CHECK(live_graph_nodes() == before + 4);
    loss.backward();
    CHECK(live_graph_nodes() == before);
    CHECK_THROWS_WITH(loss.backward(), Catch::Contains("freed by an earlier backward()"));
  }
  {
    Tensor unused = exp(w) * w;  // a graph that is never differentiated
    CHECK(live_graph_nodes() == before + 2);
  }
  CHECK(live_graph_nodes() == before);
}

TEST_CASE("NoGradGuard stops graph building — detach cuts the graph", "[autograd]") {
  Tensor w = param({3}, 1);
  {
    const NoGradGuard guard;
    CHECK_FALSE(grad_enabled());
    const Tensor y = w * 2.0f;
    CHECK_FALSE(y.requires_grad());
    CHECK_THROWS_WITH(sum(y).backward(), Catch::Contains("does not require grad"));
  }
  CHECK(grad_enabled());
  const Tensor d = (w * 2.0f).detach();
  CHECK_FALSE(d.requires_grad());
  CHECK(d.is_leaf());
  Tensor z = w * 2.0f;
  CHECK(z.requires_grad());
  CHECK_FALSE(z.is_leaf());
  CHECK_THROWS_WITH(z.backward(), Catch::Contains("needs a one-element tensor"));
  CHECK_THROWS_WITH(z.backward(Tensor::ones({2})), Catch::Contains("upstream gradient shape [2] differs"));
}

TEST_CASE("shape mismatches raise minidl::Error naming the op and both shapes", "[autograd]") {
  const Tensor a = Tensor::zeros({32, 784}), b = Tensor::zeros({64, 10});
  CHECK_THROWS_WITH(matmul(a, b), "matmul: inner dimensions differ: [32,784] x [64,10]");
  CHECK_THROWS_WITH(matmul(a, b, false, true), "matmul: inner dimensions differ: [32,784] x [64,10]^T");
  CHECK_THROWS_WITH(matmul(Tensor::zeros({3}), b), "matmul: expects 2-D operands, got [3] x [64,10]");
  const Tensor c = Tensor::zeros({2, 3}), d = Tensor::zeros({4});
  CHECK_THROWS_WITH(c + d, "add: shapes do not broadcast: [2,3] x [4]");
  CHECK_THROWS_WITH(c - d, "sub: shapes do not broadcast: [2,3] x [4]");
  CHECK_THROWS_WITH(c * d, "mul: shapes do not broadcast: [2,3] x [4]");
  CHECK_THROWS_WITH(c / d, "div: shapes do not broadcast: [2,3] x [4]");
  CHECK_THROWS_WITH(maximum(c, d), "maximum: shapes do not broadcast: [2,3] x [4]");
  CHECK_THROWS_WITH(softmax(Tensor::scalar(1)), "softmax: needs at least one axis, got shape []");
  CHECK_THROWS_WITH(gather(d, std::vector<int32_t>{0}), "gather: expects x of shape [N,C], got [4]");
  CHECK_THROWS_WITH(clip(c, 1.0f, 0.0f), "clip: lower bound 1 is above upper bound 0");
}

TEST_CASE("gradcheck differentiates the branch autodiff took, even a step away from a kink", "[autograd]") {
  // relu at 0.004: a step of 1e-2 crosses the kink; the perturbed evaluations replay the unperturbed branch, so
  // the difference is the slope of the piece autodiff differentiated (1), and every element is judged.
  const Tensor x = Tensor::from({3}, {0.004f, 0.5f, -0.7f}).set_requires_grad();
  const GradcheckResult r = gradcheck([](const Inputs& v) { return relu(v[0]); }, {x});
  CHECK(r.checked == std::vector<int64_t>{3});
  CHECK(r.worst < 1e-6);
  const Tensor y = Tensor::from({3}, {0.004f, 0.5f, 1.003f}).set_requires_grad();
  CHECK(gradcheck([](const Inputs& v) { return clip(v[0], 0.0f, 1.0f); }, {y}).worst < 1e-6);
  CHECK(gradcheck([](const Inputs& v) { return maximum(v[0], Tensor::scalar(0.5f)); }, {y}).worst < 1e-6);
  // A backward that takes the wrong side of the kink is still caught: here relu's gradient as if x were negative.
  const auto wrong_relu = [](const Inputs& v) {
    Tensor out = relu(v[0].detach());
    return record(out, "wrong_relu", {v[0]}, [](BackwardContext&) {});
  };
  CHECK_FALSE(gradcheck(wrong_relu, {x}).ok);
  CHECK_FALSE(detail::kink_watch());  // off again afterwards
}

TEST_CASE("gradcheck itself catches a wrong gradient", "[autograd]") {
  // A deliberately wrong backward: d(2x)/dx reported as 3.
  const auto wrong = [](const Inputs& v) {
    Tensor out = v[0].detach() * 2.0f;
    return record(out, "wrong", {v[0]}, [](BackwardContext& c) {
      for (int64_t i = 0; i < c.output().numel(); ++i) c.grad(0)[i] += 3.0f * c.grad_output().data()[i];
    });
  };
  const GradcheckResult r = gradcheck(wrong, {param({4}, 1)});
  CHECK_FALSE(r.ok);
  CHECK(r.worst == Approx(1.0 / 3.0).epsilon(1e-3));
}
