// Tests of modules and layers: Dense initialisation and forward, the Keras summary, named state and its
// round trip, train/eval and trainable, Keras layer names.
#include <cmath>

#include "helpers.h"
#include "minidl/nn.h"

using namespace minidl;
using minidl::test::param;
using minidl::test::require_grad_ok;
using minidl::test::require_values;
using Inputs = std::vector<Tensor>;

namespace {
// The document's model: Dense(64, relu) → BatchNormalization → Dense(10, softmax).
std::shared_ptr<Sequential> document_model(Generator& gen) {
  auto model = std::make_shared<Sequential>();
  model->add(std::make_shared<Dense>(784, 64, Activation::relu, gen));
  model->add(std::make_shared<BatchNormalization>(64));
  model->add(std::make_shared<Dense>(64, 10, Activation::softmax, gen));
  return model;
}
}  // namespace

TEST_CASE("Dense initialises glorot_uniform kernel and zero bias", "[layers]") {
  Generator gen(3);
  Dense dense(784, 64, Activation::none, gen);
  const float limit = std::sqrt(6.0f / (784 + 64));
  float lo = 1, hi = -1;
  double total = 0;
  for (float v : dense.kernel().values()) {
    REQUIRE(std::abs(v) <= limit);
    lo = std::min(lo, v);
    hi = std::max(hi, v);
    total += v;
  }
  CHECK(lo < -0.99f * limit);
  CHECK(hi > 0.99f * limit);
  CHECK(std::abs(total / dense.kernel().numel()) < 0.01 * limit);
  CHECK(dense.kernel().shape() == Shape{784, 64});
  require_values(dense.bias(), {64}, std::vector<float>(64, 0.0f));
}

TEST_CASE("Dense computes activation(x·kernel + bias)", "[layers]") {
  Dense dense(2, 2, Activation::relu, default_generator(), "d");
  dense.kernel().copy_(Tensor::from({2, 2}, {1, -1, 2, 0.5f}));
  dense.bias().copy_(Tensor::from({2}, {0.5f, -3.0f}));
  require_values(dense(Tensor::from({1, 2}, {1, 2})), {1, 2}, {5.5f, 0.0f});
  CHECK_THROWS_WITH(dense(Tensor::zeros({3, 5})), "Dense 'd': expects input [batch, 2], got [3,5]");
}

TEST_CASE("fused linear equals matmul + bias, forward and backward", "[layers]") {
  const Tensor x = param({5, 4}, 1), w = param({4, 3}, 2), b = param({3}, 3);
  require_grad_ok([](const Inputs& p) { return linear(p[0], p[1], p[2]); }, {x, w, b});
  require_grad_ok([](const Inputs& p) { return linear(p[0], p[1], Tensor()); }, {x, w});
  const Tensor upstream = Tensor::uniform({5, 3}, -1, 1);
  linear(x, w, b).backward(upstream);
  const Tensor dx = x.grad().clone(), dw = w.grad().clone(), db = b.grad().clone();
  for (Tensor t : {x, w, b}) t.zero_grad();
  const Tensor composed = matmul(x, w) + b;
  composed.backward(upstream);
  require_values(linear(x, w, b), {5, 3}, composed.to_vector(), 1e-6f);
  require_values(dx, {5, 4}, x.grad().to_vector(), 1e-6f);
  require_values(dw, {4, 3}, w.grad().to_vector(), 1e-6f);
  require_values(db, {3}, b.grad().to_vector(), 1e-6f);
  CHECK_THROWS_WITH(linear(x, w, Tensor::zeros({4})), "linear: bias [4] does not match 3 output units");
}

TEST_CASE("summary reports Keras's names and parameter counts for the document's model", "[layers]") {
  Generator gen(1);
  const auto model = document_model(gen);
  const std::string summary = model->summary({32, 784});
  INFO(summary);
  CHECK(model->name() == "sequential");
  CHECK(summary.find("dense (Dense)") != std::string::npos);
  CHECK(summary.find("batch_normalization (BatchNormalization)") != std::string::npos);
  CHECK(summary.find("dense_1 (Dense)") != std::string::npos);
  CHECK(summary.find("(None, 64)") != std::string::npos);
  CHECK(summary.find("50240") != std::string::npos);
  CHECK(summary.find("Total params: 51,146") != std::string::npos);
  CHECK(summary.find("Trainable params: 51,018") != std::string::npos);
  CHECK(summary.find("Non-trainable params: 128") != std::string::npos);
  CHECK(summary.find("weight on the old moving value; PyTorch momentum=0.01") != std::string::npos);
  CHECK(model->output_shape({32, 784}) == Shape{32, 10});
}

TEST_CASE("named state uses Keras names and round-trips into another model", "[layers]") {
  Generator gen(1), other_gen(2);
  const auto model = document_model(gen);
  std::vector<std::string> names;
  for (const auto& [name, t] : model->state()) names.push_back(name);
  CHECK(names == std::vector<std::string>{"dense/kernel", "dense/bias", "batch_normalization/gamma",
                                          "batch_normalization/beta", "dense_1/kernel", "dense_1/bias",
                                          "batch_normalization/moving_mean", "batch_normalization/moving_variance"});
  CHECK(model->parameters().size() == 6);
  CHECK(model->buffers().size() == 2);
  model->forward(Tensor::uniform({8, 784}, 0, 1, gen));  // moves the moving statistics off their initial values

  const auto copy = document_model(other_gen);
  std::map<std::string, Tensor> state;
  for (const auto& [name, t] : model->state()) state[name] = t.clone();
  copy->load_state(state);
  model->eval();
  copy->eval();
  const Tensor x = Tensor::uniform({4, 784}, 0, 1, gen);
  require_values(copy->forward(x), {4, 10}, model->forward(x).to_vector(), 0.0f);

  std::map<std::string, Tensor> bad = state;
  bad["dense/kernel"] = Tensor::zeros({784, 32});
  CHECK_THROWS_WITH(copy->load_state(bad), "load_state: 'dense/kernel' has shape [784,32] in the state but [784,64] in "
                                           "the model");
  bad = state;
  bad.erase("dense_1/bias");
  CHECK_THROWS_WITH(copy->load_state(bad), "load_state: 'dense_1/bias' [10] is missing from the state");
  bad = state;
  bad["dense_2/kernel"] = Tensor::zeros({1});
  CHECK_THROWS_WITH(copy->load_state(bad), "load_state: the state has 'dense_2/kernel', which the model does not");
}

TEST_CASE("train/eval and trainable apply to every submodule", "[layers]") {
  Generator gen(1);
  const auto model = document_model(gen);
  CHECK(model->is_training());
  model->eval();
  for (const auto& layer : model->children()) CHECK_FALSE(layer->is_training());
  model->train();
  for (const auto& layer : model->children()) CHECK(layer->is_training());
  model->children()[0]->set_trainable(false);
  CHECK(model->parameters().size() == 4);
  const std::string summary = model->summary({1, 784});
  CHECK(summary.find("Trainable params: 778") != std::string::npos);
  CHECK(summary.find("Non-trainable params: 50,368") != std::string::npos);
}

TEST_CASE("ReLU and Softmax modules", "[layers]") {
  require_values(ReLU()(Tensor::from({3}, {-1, 0, 2})), {3}, {0, 0, 2});
  const Tensor p = Softmax()(Tensor::from({1, 2}, {0, 0}));
  require_values(p, {1, 2}, {0.5f, 0.5f});
}

TEST_CASE("registration returns handles that stay valid as more is registered", "[layers]") {
  struct Many : Module {
    Many() {
      first = register_parameter("p0", Tensor::zeros({2}));
      for (int i = 1; i < 40; ++i) {
        std::string name = "p";  // (not "p" + to_string: GCC 12 warns falsely on that under -O2)
        register_parameter(name += std::to_string(i), Tensor::zeros({2}));
      }
    }
    Tensor forward(const Tensor& x) override { return x; }
    std::string type_name() const override { return "Many"; }
    Tensor first;
  } many;
  std::map<std::string, Tensor> state;
  for (const auto& [name, t] : many.state()) state[name] = Tensor::full({2}, 3.0f);
  many.load_state(state);
  require_values(many.first, {2}, {3.0f, 3.0f});  // the handle sees the load
  CHECK(many.first.requires_grad());
  CHECK_THROWS_WITH(
      [] {
        struct Twice : Module {
          Twice() {
            register_parameter("w", Tensor::zeros({1}));
            register_buffer("w", Tensor::zeros({1}));
          }
          Tensor forward(const Tensor& x) override { return x; }
          std::string type_name() const override { return "Twice"; }
        } twice;
      }(),
      "module 'twice': the name 'w' is already registered");
}

TEST_CASE("unnamed layers are named per parent, Keras-style — explicit names are kept", "[layers]") {
  Sequential a, b;
  for (Sequential* m : {&a, &b}) {
    m->add(std::make_shared<Dense>(3, 3));
    m->add(std::make_shared<ReLU>());
    m->add(std::make_shared<Dense>(3, 3));
    m->add("head", std::make_shared<Dense>(3, 2));
  }
  for (Sequential* m : {&a, &b}) {
    CHECK(m->children()[0]->name() == "dense");
    CHECK(m->children()[1]->name() == "re_lu");
    CHECK(m->children()[2]->name() == "dense_1");
    CHECK(m->children()[3]->name() == "head");
  }
  CHECK_THROWS_WITH(a.add("head", std::make_shared<ReLU>()), "module 'sequential': a submodule is already named 'head'");
  CHECK(Dense(2, 2).name() == "dense");  // a layer on its own is called by its default name
}

TEST_CASE("a partial load says what it skipped — one that matches nothing is an error", "[layers]") {
  Generator gen(1);
  const auto model = document_model(gen);
  std::map<std::string, Tensor> other;
  for (const auto& [name, t] : model->state()) other["dense_2/" + name.substr(name.find('/') + 1)] = t.clone();
  CHECK_THROWS_WITH(model->load_state(other, false),
                    Catch::StartsWith("load_state: none of the state's tensors match the model's names, so nothing "
                                      "would load (the model has dense/kernel, dense/bias"));
  std::vector<std::string> warnings;
  const WarningHandler previous = set_warning_handler([&](const std::string& w) { warnings.push_back(w); });
  std::map<std::string, Tensor> partial;
  for (const auto& [name, t] : model->state())
    if (name.rfind("dense/", 0) == 0) partial[name] = Tensor::zeros(t.shape());
  partial["extra"] = Tensor::zeros({1});
  const LoadResult r = model->load_state(partial, false);
  set_warning_handler(previous);
  CHECK(r.missing.size() == 6);
  CHECK(r.unexpected == std::vector<std::string>{"extra"});
  REQUIRE(warnings.size() == 1);
  CHECK_THAT(warnings[0], Catch::Contains("6 of the model's tensors kept their values") && Catch::Contains("(extra)"));
  CHECK(model->state()[0].second.to_vector() == std::vector<float>(784 * 64, 0.0f));
}

TEST_CASE("a training checkpoint's optimizer state is ignored when loading a model", "[layers]") {
  Generator gen(1);
  const auto model = document_model(gen);
  std::map<std::string, Tensor> state;
  for (const auto& [name, t] : model->state()) state[name] = t.clone();
  state["optimizer/m/dense/kernel"] = Tensor::zeros({784, 64});
  CHECK(model->load_state(state).complete());
}

TEST_CASE("Dropout: inverted in training, identity in inference, seeded, grad-checked", "[layers]") {
  Dropout dropout(0.25f, 7);
  const Tensor x = Tensor::ones({50, 40});
  const Tensor y = dropout(x);
  int64_t kept = 0;
  for (float v : y.values()) {
    REQUIRE((v == 0.0f || v == Approx(1.0f / 0.75f)));
    kept += v != 0.0f;
  }
  CHECK(kept / 2000.0 == Approx(0.75).margin(0.03));
  Dropout again(0.25f, 7);
  CHECK(again(x).to_vector() == y.to_vector());  // same seed, same mask
  CHECK(dropout(x).to_vector() != y.to_vector());  // the next call draws a new mask
  dropout.eval();
  CHECK(dropout(x).same(x));
  CHECK(dropout.named_generators().size() == 1);
  CHECK_THROWS_WITH(Dropout(1.0f), "Dropout 'dropout': rate must be in [0, 1), got 1 (the fraction of inputs dropped)");
  // The op's gradient is the mask: gradcheck it with the same mask every evaluation.
  const Tensor input = param({6, 5}, 3);
  require_grad_ok(
      [](const Inputs& p) {
        Generator g(11);
        return minidl::dropout(p[0], 0.4f, g);
      },
      {input});
}
