// The op table: one case per differentiable op and size — its inputs, the op, and where a fused kernel exists
// the same function composed from simpler ops — run three ways: gradient check, one thread against two (byte
// for byte, at shapes above the threading thresholds), fused against composed. A last test reads the sources:
// an op that records a backward without a case here fails it.
#include <omp.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <regex>
#include <set>

#include "helpers.h"
#include "minidl/autograd.h"
#include "minidl/distributed.h"
#include "minidl/functional.h"
#include "minidl/ops.h"

using namespace minidl;

namespace {
using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

struct OpCase {
  std::string op;    // the name the op records for its backward
  bool threaded;     // shapes above the thresholds at which the op's work is split between threads
  std::vector<Tensor> inputs;
  Fn f;
  Fn composed{};     // the same function from simpler ops, where `op` is a fused kernel
  // The gradient check's step. Where many outputs move with each input (softmax over 80 columns, batch
  // normalisation over 1024 rows), the float32 rounding of all of them is summed into each difference; a larger
  // step keeps it below the tolerance (measured for batch_norm_train at [1024, 64]: worst relative error 0.045
  // at step 0.02, 0.014 at 0.1, 0.005 at 0.2, and the composed ops' noisier still — rounding, not a bug).
  double eps = 1e-2;
};

// Seeded inputs requiring grad: uniform in [lo, hi).
Tensor in(const Shape& shape, uint64_t seed, float lo = -1.0f, float hi = 1.0f) { return test::param(shape, seed, lo, hi); }
Tensor constant(const Shape& shape, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  Generator gen(seed);
  return Tensor::uniform(shape, lo, hi, gen);
}
std::vector<int32_t> labels(int64_t n, int64_t classes) {
  std::vector<int32_t> l(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) l[static_cast<size_t>(i)] = static_cast<int32_t>((i * 7 + 3) % classes);
  return l;
}
Tensor one_hot_rows(int64_t n, int64_t classes) { return one_hot(labels(n, classes), classes); }

// Elementwise work is split from 32k elements, products from 8 MFLOP: these shapes exceed both.
const Shape kBig{256, 160};

std::vector<OpCase> op_cases() {
  std::vector<OpCase> cases;
  const auto add_case = [&](OpCase c) { cases.push_back(std::move(c)); };
  // Binary elementwise, with broadcasting at the small size.
  const std::vector<std::pair<std::string, Fn>> binaries = {
      {"add", [](const auto& v) { return add(v[0], v[1]); }},
      {"sub", [](const auto& v) { return sub(v[0], v[1]); }},
      {"mul", [](const auto& v) { return mul(v[0], v[1]); }},
      {"div", [](const auto& v) { return div(v[0], v[1]); }},
      {"maximum", [](const auto& v) { return maximum(v[0], v[1]); }}};
  for (const auto& [name, f] : binaries) {
    const float lo = name == "div" ? 0.5f : -1.0f;
    add_case({name, false, {in({3, 4}, 1), in({4}, 2, lo, 2.0f)}, f});
    add_case({name, true, {in(kBig, 3), in(kBig, 4, lo, 2.0f)}, f});
  }
  // Unary elementwise; log, sqrt, rsqrt and pow on positive inputs.
  struct Unary {
    std::string name;
    Fn f;
    bool positive = false;
    Fn composed{};
  };
  const std::vector<Unary> unaries = {
      {"neg", [](const auto& v) { return neg(v[0]); }},
      {"exp", [](const auto& v) { return exp(v[0]); }},
      {"log", [](const auto& v) { return log(v[0]); }, true},
      {"sqrt", [](const auto& v) { return sqrt(v[0]); }, true},
      {"rsqrt", [](const auto& v) { return rsqrt(v[0]); }, true,
       [](const auto& v) { return div(Tensor::ones(v[0].shape()), sqrt(v[0])); }},
      {"square", [](const auto& v) { return square(v[0]); }, false, [](const auto& v) { return mul(v[0], v[0]); }},
      {"pow", [](const auto& v) { return pow(v[0], 2.5f); }, true},
      {"relu", [](const auto& v) { return relu(v[0]); }, false,
       [](const auto& v) { return maximum(v[0], Tensor::zeros(v[0].shape())); }},
      {"clip", [](const auto& v) { return clip(v[0], -0.5f, 0.3f); }},
      {"abs", [](const auto& v) { return abs(v[0]); }, false,
       [](const auto& v) { return maximum(v[0], neg(v[0])); }},
      {"sigmoid", [](const auto& v) { return sigmoid(v[0]); }, false,
       [](const auto& v) { return div(Tensor::ones(v[0].shape()), add_scalar(exp(neg(v[0])), 1.0f)); }},
      {"tanh", [](const auto& v) { return tanh(v[0]); }, false,
       [](const auto& v) {
         const Tensor e = exp(mul_scalar(v[0], 2.0f));
         return div(add_scalar(e, -1.0f), add_scalar(e, 1.0f));
       }},
      {"gelu", [](const auto& v) { return gelu(v[0]); }},
      {"silu", [](const auto& v) { return silu(v[0]); }, false, [](const auto& v) { return mul(v[0], sigmoid(v[0])); }},
      {"leaky_relu", [](const auto& v) { return leaky_relu(v[0], 0.2f); }, false,
       [](const auto& v) { return maximum(v[0], mul_scalar(v[0], 0.2f)); }},
      {"add_scalar", [](const auto& v) { return add_scalar(v[0], 0.75f); }, false,
       [](const auto& v) { return add(v[0], Tensor::full(v[0].shape(), 0.75f)); }},
      {"mul_scalar", [](const auto& v) { return mul_scalar(v[0], -1.5f); }, false,
       [](const auto& v) { return mul(v[0], Tensor::full(v[0].shape(), -1.5f)); }}};
  for (const Unary& u : unaries) {
    const float lo = u.positive ? 0.5f : -1.0f, hi = u.positive ? 2.0f : 1.0f;
    add_case({u.name, false, {in({3, 4}, 5, lo, hi)}, u.f, u.composed});
    add_case({u.name, true, {in(kBig, 6, lo, hi)}, u.f, u.composed});
  }
  // Reductions.
  for (const std::string name : {"sum", "mean"}) {
    const bool average = name == "mean";
    const auto reduce = [average](std::vector<int> axes, bool keep) -> Fn {
      return [=](const auto& v) { return average ? mean(v[0], axes, keep) : sum(v[0], axes, keep); };
    };
    add_case({name, false, {in({3, 4, 5}, 7)}, reduce({0, 2}, false)});
    add_case({name, false, {in({3, 4, 5}, 8)}, reduce({1}, true)});
    add_case({name, true, {in(kBig, 9)}, reduce({0}, false)});
  }
  // Products: every transpose combination small, the threaded product both ways round.
  for (const bool ta : {false, true})
    for (const bool tb : {false, true})
      add_case({"matmul", false, {in(ta ? Shape{4, 3} : Shape{3, 4}, 10), in(tb ? Shape{5, 4} : Shape{4, 5}, 11)},
                [ta, tb](const auto& v) { return matmul(v[0], v[1], ta, tb); }});
  // A product is linear in each input, so its central differences have no truncation error at any step, only
  // the float32 rounding of the 512-long sums; step 0.1 shrinks that (aᵀ·b below, worst relative error: 0.0108
  // at step 0.01, 0.0006 at 0.1).
  add_case({"matmul", true, {in({256, 512}, 12), in({512, 64}, 13)}, [](const auto& v) { return matmul(v[0], v[1]); },
            {}, 0.1});
  add_case({"matmul", true, {in({512, 256}, 14), in({512, 64}, 15)},
            [](const auto& v) { return matmul(v[0], v[1], true, false); }, {}, 0.1});
  const Fn affine = [](const auto& v) { return linear(v[0], v[1], v[2]); };
  const Fn affine_composed = [](const auto& v) { return add(matmul(v[0], v[1]), v[2]); };
  add_case({"linear", false, {in({3, 4}, 16), in({4, 5}, 17), in({5}, 18)}, affine, affine_composed});
  add_case({"linear", true, {in({256, 512}, 19), in({512, 64}, 20), in({64}, 21)}, affine, affine_composed});
  // Shapes.
  add_case({"reshape", false, {in({3, 4}, 22)}, [](const auto& v) { return reshape(v[0], {2, 6}); }});
  add_case({"reshape", true, {in(kBig, 23)}, [](const auto& v) { return reshape(v[0], {160, 256}); }});
  add_case({"transpose", false, {in({2, 3, 4}, 24)}, [](const auto& v) { return transpose(v[0], 0, 2); }});
  add_case({"transpose", true, {in(kBig, 25)}, [](const auto& v) { return transpose(v[0]); }});
  // Convolution and pooling (channels last).
  add_case({"conv2d", false, {in({2, 5, 5, 3}, 26), in({3, 3, 3, 4}, 27), in({4}, 28)},
            [](const auto& v) { return conv2d(v[0], v[1], v[2]); }});
  add_case({"conv2d", false, {in({2, 5, 6, 3}, 29), in({3, 2, 3, 4}, 30)},
            [](const auto& v) { return conv2d(v[0], v[1], Tensor(), {2, 2}, Padding::same); }});
  add_case({"conv2d", true, {in({8, 16, 16, 16}, 31), in({3, 3, 16, 32}, 32), in({32}, 33)},
            [](const auto& v) { return conv2d(v[0], v[1], v[2]); }});
  add_case({"max_pool2d", false, {in({2, 5, 5, 3}, 34)}, [](const auto& v) { return max_pool2d(v[0], {2, 2}, {2, 2}, Padding::same); }});
  add_case({"max_pool2d", true, {in({16, 32, 32, 8}, 35)}, [](const auto& v) { return max_pool2d(v[0], {2, 2}, {2, 2}); }});
  add_case({"avg_pool2d", false, {in({2, 5, 5, 3}, 36)}, [](const auto& v) { return avg_pool2d(v[0], {3, 3}, {2, 2}, Padding::same); }});
  add_case({"avg_pool2d", true, {in({16, 32, 32, 8}, 37)}, [](const auto& v) { return avg_pool2d(v[0], {2, 2}, {2, 2}); }});
  // A pooling window as large as the image is the mean over height and width.
  add_case({"avg_pool2d", false, {in({2, 4, 4, 3}, 38)}, [](const auto& v) { return avg_pool2d(v[0], {4, 4}, {4, 4}); },
            [](const auto& v) { return reshape(mean(v[0], {1, 2}), {2, 1, 1, 3}); }});
  // Softmax and the losses.
  add_case({"softmax", false, {in({3, 5}, 39)}, [](const auto& v) { return softmax(v[0]); }});
  add_case({"softmax", true, {in({512, 80}, 40)}, [](const auto& v) { return softmax(v[0]); }});
  const Fn log_sm = [](const auto& v) { return log_softmax(v[0]); };
  const Fn log_sm_composed = [](const auto& v) { return log(softmax(v[0])); };
  add_case({"log_softmax", false, {in({3, 5}, 41)}, log_sm, log_sm_composed});
  add_case({"log_softmax", true, {in({512, 80}, 42)}, log_sm, log_sm_composed, 0.1});
  add_case({"gather", false, {in({3, 5}, 43)}, [](const auto& v) { return gather(v[0], labels(3, 5)); }});
  add_case({"gather", true, {in({4096, 10}, 44)}, [](const auto& v) { return gather(v[0], labels(4096, 10)); }});
  for (const int64_t n : {4, 4096}) {
    const Tensor y = one_hot_rows(n, 10);
    const Fn cross_entropy_composed = [y, n](const auto& v) {
      return mul_scalar(sum(mul(y, log_softmax(v[0]))), -1.0f / static_cast<float>(n));
    };
    add_case({"softmax_cross_entropy", n > 4, {in({n, 10}, 45)},
              [y](const auto& v) { return softmax_cross_entropy(v[0], y); }, cross_entropy_composed});
    add_case({"sparse_softmax_cross_entropy", n > 4, {in({n, 10}, 46)},
              [n](const auto& v) { return sparse_softmax_cross_entropy(v[0], labels(n, 10)); },
              [y](const auto& v) { return softmax_cross_entropy(v[0], y); }});
  }
  // Binary cross-entropy from logits, fused, against −mean(y log σ(z) + (1 − y) log(1 − σ(z))) with soft targets.
  for (const Shape& shape : {Shape{4, 1}, Shape{256, 160}}) {
    const Fn sigmoid_composed = [](const auto& v) {
      const Tensor p = sigmoid(v[0]);
      return neg(mean(add(mul(v[1], log(p)), mul(add_scalar(neg(v[1]), 1.0f), log(add_scalar(neg(p), 1.0f))))));
    };
    add_case({"sigmoid_cross_entropy", shape.numel() > 32768, {in(shape, 62, -3.0f, 3.0f), in(shape, 63, 0.0f, 1.0f)},
              [](const auto& v) { return sigmoid_cross_entropy(v[0], v[1]); }, sigmoid_composed});
  }
  // Batch normalisation, fused, against moments + batch_normalization.
  for (const Shape& shape : {Shape{6, 4}, Shape{2, 3, 3, 4}, Shape{1024, 64}}) {
    const int64_t c = shape[shape.rank() - 1];
    std::vector<int> axes(static_cast<size_t>(shape.rank() - 1));
    std::iota(axes.begin(), axes.end(), 0);
    const bool big = shape.numel() > 32768;
    add_case({"batch_norm_train", big, {in(shape, 47), in({c}, 48, 0.5f, 1.5f), in({c}, 49)},
              [](const auto& v) {
                Tensor m, var;
                return batch_norm_train(v[0], v[1], v[2], 1e-3f, m, var);
              },
              [axes](const auto& v) {
                const auto [m, var] = moments(v[0], axes);
                return batch_normalization(v[0], m, var, v[2], v[1], 1e-3f);
              },
              big ? 0.2 : 1e-2});
    // The synchronised kernel, in a world of one, against the same composition (its one-pass variance rounds
    // differently from the two-pass one; the comparison's tolerance covers it).
    add_case({"batch_norm_train_synced", big, {in(shape, 58), in({c}, 59, 0.5f, 1.5f), in({c}, 60)},
              [](const auto& v) {
                Tensor m, var;
                return batch_norm_train_synced(v[0], v[1], v[2], 1e-3f, Communicator::world(), m, var);
              },
              [axes](const auto& v) {
                const auto [m, var] = moments(v[0], axes);
                return batch_normalization(v[0], m, var, v[2], v[1], 1e-3f);
              },
              big ? 0.2 : 1e-2});
    const Tensor mean_c = constant({c}, 50), var_c = constant({c}, 51, 0.5f, 2.0f);
    add_case({"batch_norm_inference", big, {in(shape, 52), in({c}, 53, 0.5f, 1.5f), in({c}, 54)},
              [mean_c, var_c](const auto& v) { return batch_norm_inference(v[0], mean_c, var_c, v[1], v[2], 1e-3f); },
              [mean_c, var_c](const auto& v) { return batch_normalization(v[0], mean_c, var_c, v[2], v[1], 1e-3f); }});
  }
  // The sum over processes: in a world of one, the identity, forward and backward.
  for (const Shape& shape : {Shape{3, 4}, kBig})
    add_case({"all_reduce_sum", shape.numel() > 32768, {in(shape, 61)},
              [](const auto& v) { return all_reduce_sum(v[0], Communicator::world()); },
              [](const auto& v) { return mul_scalar(v[0], 1.0f); }});
  // Group normalisation, fused, against a reshape to [N, S, G, C/G] + moments over axes 1 and 3 +
  // batch_normalization; γ and β reshaped to [G, C/G]. Its steps are larger for the reason given at OpCase::eps,
  // measured: at [2,9,8] the worst relative error was 0.021 at step 0.01 and 0.042 at 0.003 (rounding grows as
  // the step shrinks); at [16,196,32], 0.011 at 0.2. The fused-against-composed gradients agree at every shape.
  for (const auto& [shape, groups] : {std::pair{Shape{3, 1, 8}, int64_t{1}}, std::pair{Shape{2, 9, 8}, int64_t{4}},
                                      std::pair{Shape{16, 196, 32}, int64_t{8}}}) {
    const int64_t c = shape[2], g = groups;
    const bool big = shape.numel() > 32768;
    add_case({"group_norm", big, {in(shape, 55), in({c}, 56, 0.5f, 1.5f), in({c}, 57)},
              [g](const auto& v) { return group_norm(v[0], g, v[1], v[2], 1e-3f); },
              [g, c](const auto& v) {
                const Tensor x = reshape(v[0], {v[0].size(0), v[0].size(1), g, c / g});
                const auto [m, var] = moments(x, {1, 3}, true);
                const Tensor y = batch_normalization(x, m, var, reshape(v[2], {g, c / g}), reshape(v[1], {g, c / g}), 1e-3f);
                return reshape(y, v[0].shape());
              },
              big ? 0.5 : 5e-2});
  }
  return cases;
}

std::string label(const OpCase& c) {
  std::string shapes;
  for (const Tensor& t : c.inputs) shapes += (shapes.empty() ? "" : " ") + t.shape().str();
  return c.op + (c.threaded ? " (threaded) " : " ") + shapes;
}

// The op's output and every input's gradient of a fixed random projection of it, with `threads` threads.
std::vector<std::vector<float>> output_and_gradients(const OpCase& c, const Fn& f, int threads) {
  omp_set_num_threads(threads);
  std::vector<Tensor> inputs;
  for (const Tensor& t : c.inputs) {
    Tensor copy = t.clone();
    copy.set_requires_grad(true);
    inputs.push_back(copy);
  }
  const Tensor out = f(inputs);
  const Tensor weights = constant(out.shape(), 99);
  sum(mul(out, weights)).backward();
  std::vector<std::vector<float>> result{out.to_vector()};
  for (const Tensor& t : inputs) result.push_back(t.grad().to_vector());
  omp_set_num_threads(1);
  return result;
}

std::string recorded_name(const Tensor& t) { return t.impl().grad_fn ? t.impl().grad_fn->name : "(none)"; }
}  // namespace

TEST_CASE("op table: every case's gradient matches central differences, threaded shapes included", "[op-table]") {
  for (const OpCase& c : op_cases()) {
    INFO(label(c));
    // The case exercises the op it names: its output was recorded by that op.
    CHECK(recorded_name(c.f(c.inputs)) == c.op);
    GradcheckOptions options;
    if (c.threaded) options.max_elements = 48;
    options.eps = c.eps;
    test::require_grad_ok(c.f, c.inputs, options);
  }
}

TEST_CASE("op table: one thread and two give the same bytes, forward and backward", "[op-table]") {
  for (const OpCase& c : op_cases()) {
    INFO(label(c));
    CHECK(output_and_gradients(c, c.f, 1) == output_and_gradients(c, c.f, 2));
  }
}

TEST_CASE("op table: fused kernels equal their composition, values and gradients", "[op-table]") {
  int compared = 0;
  for (const OpCase& c : op_cases()) {
    if (!c.composed) continue;
    INFO(label(c));
    const auto fused = output_and_gradients(c, c.f, 1), composed = output_and_gradients(c, c.composed, 1);
    REQUIRE(fused.size() == composed.size());
    for (size_t i = 0; i < fused.size(); ++i) {
      INFO((i == 0 ? "output" : "gradient of input " + std::to_string(i - 1)));
      REQUIRE(fused[i].size() == composed[i].size());
      for (size_t j = 0; j < fused[i].size(); ++j)
        REQUIRE(fused[i][j] == Approx(composed[i][j]).epsilon(1e-4).margin(1e-5));
    }
    ++compared;
  }
  CHECK(compared >= 14);
}

TEST_CASE("op table: every op that records a backward in the sources has cases, small and threaded", "[op-table]") {
  // Names passed as string literals to record(out, "name", ...) — out a name or a call, record(Tensor::scalar(l),
  // "name", ...) — unary("name", ...), binary("name", ...) and reduce("name", ...) in core/ and layers/.
  const std::regex call(R"((?:record\(\s*[\w:]+(?:\([^()]*\))?\s*,|unary\(|binary\(|reduce\()\s*"([a-z_0-9]+)\")");
  std::set<std::string> in_sources;
  for (const char* folder : {"core/src", "layers/src"})
    for (const auto& entry : std::filesystem::directory_iterator(std::string(MINIDL_SOURCE_DIR) + "/" + folder)) {
      std::ifstream file(entry.path());
      const std::string text{std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>()};
      for (auto it = std::sregex_iterator(text.begin(), text.end(), call); it != std::sregex_iterator(); ++it)
        in_sources.insert((*it)[1].str());
    }
  REQUIRE(in_sources.size() >= 30);  // the scan itself works
  REQUIRE(in_sources.count("softmax_cross_entropy") == 1);  // recorded on Tensor::scalar(loss)
  std::map<std::string, std::set<bool>> sizes;
  for (const OpCase& c : op_cases()) sizes[c.op].insert(c.threaded);
  for (const std::string& op : in_sources) {
    INFO("op '" << op << "' records a backward: give it a small and a threaded case in tests/test_op_table.cpp");
    CHECK(sizes[op] == std::set<bool>{false, true});
  }
}
