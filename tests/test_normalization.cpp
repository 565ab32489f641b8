// Tests of the normalisation variants (docs/normalization.md): LayerNormalization, GroupNormalization, ghost
// batches, batch renormalisation and frozen statistics, each against its formula computed here in double, with
// gradients; the grammar's kinds and modes; and the errors bad settings get.
#include <cmath>

#include "helpers.h"
#include "minidl/callbacks.h"
#include "minidl/data.h"
#include "minidl/models.h"
#include "minidl/nn.h"
#include "minidl/statistics.h"
#include "minidl/train.h"

using namespace minidl;
using minidl::test::param;
using minidl::test::require_grad_ok;
using Inputs = std::vector<Tensor>;

namespace {
// Normalises the values at `index` (positions in x's data) with their own mean and biased variance, then
// applies gamma/beta per channel (channel = position % c): the formula every variant shares.
void normalise_set(const std::vector<int64_t>& index, const Tensor& x, int64_t c, const std::vector<double>& gamma,
                   const std::vector<double>& beta, double eps, std::vector<double>& out, double* mean_out = nullptr,
                   double* var_out = nullptr) {
  double mean = 0, var = 0;
  for (int64_t i : index) mean += x.data()[i] / double(index.size());
  for (int64_t i : index) var += std::pow(x.data()[i] - mean, 2) / double(index.size());
  for (int64_t i : index) out[i] = gamma[i % c] * (x.data()[i] - mean) / std::sqrt(var + eps) + beta[i % c];
  if (mean_out) *mean_out = mean;
  if (var_out) *var_out = var;
}

std::vector<double> values_of(const Tensor& t) { return {t.data(), t.data() + t.numel()}; }

void require_near(const Tensor& t, const std::vector<double>& expected, double tolerance = 1e-5) {
  REQUIRE(t.numel() == static_cast<int64_t>(expected.size()));
  for (int64_t i = 0; i < t.numel(); ++i) {
    INFO("element " << i);
    REQUIRE(t.data()[i] == Approx(expected[i]).margin(tolerance));
  }
}

void set_values(Tensor t, uint64_t seed, float lo, float hi) {
  Generator gen(seed);
  t.copy_(Tensor::uniform(t.shape(), lo, hi, gen));
}
}  // namespace

TEST_CASE("LayerNormalization: each position over its last axis, Keras's formula, and its gradient", "[normalization]") {
  LayerNormalization ln(5, 1e-3f);
  set_values(ln.gamma(), 1, 0.5f, 1.5f);
  set_values(ln.beta(), 2, -0.5f, 0.5f);
  const Tensor x = param({3, 2, 5}, 3, -2.0f, 2.0f);
  std::vector<double> expected(30);
  for (int64_t row = 0; row < 6; ++row) {
    std::vector<int64_t> index;
    for (int64_t k = 0; k < 5; ++k) index.push_back(row * 5 + k);
    normalise_set(index, x, 5, values_of(ln.gamma()), values_of(ln.beta()), 1e-3, expected);
  }
  require_near(ln.forward(x), expected);
  ln.eval();
  require_near(ln.forward(x), expected);  // no batch statistics: inference is the same
  require_grad_ok([&](const Inputs& v) { return ln.forward(v[0]); }, {x}, {.eps = 5e-2});
}

TEST_CASE("RMSNormalization: each position scaled by its root mean square, Keras's formula, and its gradient",
          "[normalization]") {
  RMSNormalization rms(5, 1e-6f);  // Keras's default epsilon
  set_values(rms.scale(), 4, 0.5f, 1.5f);
  const Tensor x = param({3, 2, 5}, 5, -2.0f, 2.0f);
  std::vector<double> expected(30);
  for (int64_t row = 0; row < 6; ++row) {
    double squares = 0;
    for (int64_t k = 0; k < 5; ++k) squares += std::pow(x.data()[row * 5 + k], 2) / 5.0;
    for (int64_t k = 0; k < 5; ++k)
      expected[row * 5 + k] = x.data()[row * 5 + k] / std::sqrt(squares + 1e-6) * rms.scale().data()[k];
  }
  require_near(rms.forward(x), expected);
  rms.eval();
  require_near(rms.forward(x), expected);  // no batch statistics: inference is the same
  REQUIRE(rms.state().size() == 1);        // scale alone: no centring, no offset
  Tensor scale = rms.scale();
  require_grad_ok([&](const Inputs& v) { return rms.forward(v[0]); }, {x}, {.eps = 5e-2});
  require_grad_ok([&](const Inputs&) { return rms.forward(x.detach()); }, {scale}, {.eps = 5e-2});
  // --norm rms and the grammar's rmsnorm build it; the kind written out keeps Keras's epsilon.
  ModelConfig c;
  c.input_shape = {20};
  c.description = "dense:16,relu,bn,rmsnorm,dense:10,softmax";
  c.norm = "rms";
  const auto model = build_model(c);
  REQUIRE(model->children()[2]->type_name() == "RMSNormalization");
  REQUIRE(model->children()[3]->name() == "rms_normalization_1");
  REQUIRE(model->state().size() == 6);
}

TEST_CASE("GroupNormalization: each sample's group of channels over every position, and its gradient", "[normalization]") {
  GroupNormalization gn(8, 4, 1e-3f);
  set_values(gn.gamma(), 4, 0.5f, 1.5f);
  set_values(gn.beta(), 5, -0.5f, 0.5f);
  const Tensor x = param({2, 3, 3, 8}, 6, -2.0f, 2.0f);
  std::vector<double> expected(x.numel());
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t g = 0; g < 4; ++g) {
      std::vector<int64_t> index;  // channels 2g and 2g + 1 at the 9 positions of sample n
      for (int64_t p = 0; p < 9; ++p)
        for (int64_t k = 2 * g; k < 2 * g + 2; ++k) index.push_back((n * 9 + p) * 8 + k);
      normalise_set(index, x, 8, values_of(gn.gamma()), values_of(gn.beta()), 1e-3, expected);
    }
  require_near(gn.forward(x), expected);
  require_grad_ok([&](const Inputs& v) { return gn.forward(v[0]); }, {x}, {.eps = 5e-2});
  // One group of all channels on one position is LayerNormalization.
  GroupNormalization whole(8, 1);
  LayerNormalization ln(8);
  const Tensor rows = param({4, 8}, 7);
  require_near(whole.forward(rows), values_of(ln.forward(rows)), 1e-6);
}

TEST_CASE("ghost batches: Keras's strided ghost batches, one moving update from their mean", "[normalization]") {
  // [8, 3] with virtual_batch_size 4 is read as [4, 2, 3]: ghost batch 0 holds samples 0, 2, 4, 6.
  BatchNormalization bn(3, {.momentum = 0.5f, .epsilon = 1e-3f, .virtual_batch_size = 4});
  set_values(bn.gamma(), 8, 0.5f, 1.5f);
  set_values(bn.beta(), 9, -0.5f, 0.5f);
  const Tensor x = param({8, 3}, 10, -2.0f, 2.0f);
  std::vector<double> expected(24), ghost_means(2 * 3), ghost_vars(2 * 3);
  for (int64_t j = 0; j < 2; ++j)
    for (int64_t k = 0; k < 3; ++k) {
      std::vector<int64_t> index;
      for (int64_t a = 0; a < 4; ++a) index.push_back((a * 2 + j) * 3 + k);
      normalise_set(index, x, 3, values_of(bn.gamma()), values_of(bn.beta()), 1e-3, expected, &ghost_means[j * 3 + k],
                    &ghost_vars[j * 3 + k]);
    }
  bn.train();
  require_near(bn.forward(x), expected);
  for (int64_t k = 0; k < 3; ++k) {
    REQUIRE(bn.moving_mean().data()[k] == Approx(0.5 * (ghost_means[k] + ghost_means[3 + k]) / 2).margin(1e-6));
    REQUIRE(bn.moving_variance().data()[k] == Approx(0.5 + 0.5 * (ghost_vars[k] + ghost_vars[3 + k]) / 2).margin(1e-6));
  }
  require_grad_ok([&](const Inputs& v) { return bn.forward(v[0]); }, {x}, {.eps = 5e-2});

  // Images: [4, 2, 2, 3] with virtual_batch_size 2 → ghost batch 0 is samples 0 and 2, over their 4 positions each.
  BatchNormalization images(3, {.virtual_batch_size = 2});
  const Tensor xi = param({4, 2, 2, 3}, 11, -2.0f, 2.0f);
  std::vector<double> expected_i(48);
  for (int64_t j = 0; j < 2; ++j)
    for (int64_t k = 0; k < 3; ++k) {
      std::vector<int64_t> index;
      for (int64_t a = 0; a < 2; ++a)
        for (int64_t p = 0; p < 4; ++p) index.push_back(((a * 2 + j) * 4 + p) * 3 + k);
      normalise_set(index, xi, 3, {1, 1, 1}, {0, 0, 0}, 1e-3, expected_i);
    }
  images.train();
  require_near(images.forward(xi), expected_i);
  require_grad_ok([&](const Inputs& v) { return images.forward(v[0]); }, {xi}, {.eps = 5e-2});
  // Ghost batches as large as the batch are plain batch normalisation.
  BatchNormalization one_ghost(3, {.virtual_batch_size = 8}), plain(3);
  one_ghost.train();
  plain.train();
  require_near(one_ghost.forward(x), values_of(plain.forward(x)), 1e-6);
}

TEST_CASE("renorm: y = γ(r·x̂ + d) + β with r and d clipped and constant to the gradient", "[normalization]") {
  BatchNormalizationOptions o{.momentum = 0.9f, .epsilon = 1e-3f, .renorm = true, .renorm_momentum = 0.8f};
  o.rmax = 1.5f, o.rmin = 0.8f, o.dmax = 0.3f;
  BatchNormalization bn(3, o);
  set_values(bn.gamma(), 12, 0.5f, 1.5f);
  set_values(bn.beta(), 13, -0.5f, 0.5f);
  bn.renorm_mean().copy_(Tensor::from({3}, {0.1f, -0.4f, 0.0f}));
  bn.renorm_stddev().copy_(Tensor::from({3}, {0.5f, 2.0f, 1.0f}));
  const Tensor x = param({6, 3}, 14, -2.0f, 2.0f);
  const std::vector<double> gamma = values_of(bn.gamma()), beta = values_of(bn.beta());
  const std::vector<double> mu_r = values_of(bn.renorm_mean()), sigma_r = values_of(bn.renorm_stddev());
  std::vector<double> xhat(18), y(18), r(3), d(3), mean(3), var(3);
  for (int64_t k = 0; k < 3; ++k) {
    std::vector<int64_t> index;
    for (int64_t n = 0; n < 6; ++n) index.push_back(n * 3 + k);
    normalise_set(index, x, 3, {1, 1, 1}, {0, 0, 0}, 1e-3, xhat, &mean[k], &var[k]);
    const double sigma = std::max(sigma_r[k], std::sqrt(1e-3));
    r[k] = std::clamp(std::sqrt(var[k] + 1e-3) / sigma, 0.8, 1.5);
    d[k] = std::clamp((mean[k] - mu_r[k]) / sigma, -0.3, 0.3);
    for (int64_t i : index) y[i] = gamma[k] * (r[k] * xhat[i] + d[k]) + beta[k];
  }
  bn.train();
  const Tensor out = bn.forward(x);
  require_near(out, y);
  for (int64_t k = 0; k < 3; ++k) {
    REQUIRE(bn.renorm_mean().data()[k] == Approx(0.8 * mu_r[k] + 0.2 * mean[k]).margin(1e-6));
    REQUIRE(bn.renorm_stddev().data()[k] == Approx(0.8 * sigma_r[k] + 0.2 * std::sqrt(var[k] + 1e-3)).margin(1e-6));
    REQUIRE(bn.moving_mean().data()[k] == Approx(0.1 * mean[k]).margin(1e-6));
  }
  // The gradient, r and d held constant: dβ = Σdy, dγ = Σdy(r·x̂ + d), dx = γr·inv/N·(N·dy − Σdy − x̂·Σdy·x̂).
  const Tensor w = param({6, 3}, 15);
  Tensor xg = x.clone();
  xg.set_requires_grad(true);
  bn.renorm_mean().copy_(Tensor::from({3}, {0.1f, -0.4f, 0.0f}));  // r and d as before the first step
  bn.renorm_stddev().copy_(Tensor::from({3}, {0.5f, 2.0f, 1.0f}));
  bn.zero_grad();
  sum(mul(bn.forward(xg), w.detach())).backward();
  for (int64_t k = 0; k < 3; ++k) {
    double sdy = 0, sdyx = 0;
    for (int64_t n = 0; n < 6; ++n) sdy += w.data()[n * 3 + k], sdyx += w.data()[n * 3 + k] * xhat[n * 3 + k];
    REQUIRE(bn.beta().grad().data()[k] == Approx(sdy).margin(1e-5));
    REQUIRE(bn.gamma().grad().data()[k] == Approx(r[k] * sdyx + d[k] * sdy).margin(1e-5));
    const double inv = 1.0 / std::sqrt(var[k] + 1e-3);
    for (int64_t n = 0; n < 6; ++n) {
      const int64_t i = n * 3 + k;
      REQUIRE(xg.grad().data()[i] ==
              Approx(gamma[k] * r[k] * inv / 6.0 * (6.0 * w.data()[i] - sdy - xhat[i] * sdyx)).margin(1e-5));
    }
  }
  // r clipped to 1 and d to 0 is plain batch normalisation; inference ignores renorm.
  BatchNormalizationOptions identity{.renorm = true};
  identity.rmax = 1.0f, identity.rmin = 1.0f, identity.dmax = 0.0f;
  BatchNormalization clipped(3, identity), plain(3);
  clipped.train();
  plain.train();
  require_near(clipped.forward(x), values_of(plain.forward(x)), 1e-6);
  // Inference reads moving_mean and moving_variance alone. (Those moved apart in the step above: renorm derives
  // its variance from moving_stddev, as tf.keras 2.x — the next test — so give both layers the same ones.)
  clipped.moving_mean().copy_(plain.moving_mean());
  clipped.moving_variance().copy_(plain.moving_variance());
  clipped.eval();
  plain.eval();
  require_near(clipped.forward(x), values_of(plain.forward(x)), 1e-6);
}

TEST_CASE("renorm's moving variance follows tf.keras 2.x: relu(moving_stddev² − ε) over 20 steps, dense and conv",
          "[normalization]") {
  // tf.keras 2.x keeps moving_stddev (initially sqrt(1) = 1), a moving average (momentum) of sqrt(σ²_B + ε),
  // and sets moving_variance = max(moving_stddev² − ε, 0) after each step; the mean is averaged as usual.
  for (const Shape& shape : {Shape{16, 3}, Shape{4, 5, 5, 3}}) {
    INFO("input " << shape.str());
    const double momentum = 0.9, eps = 1e-3;
    BatchNormalizationOptions o{.momentum = static_cast<float>(momentum), .epsilon = static_cast<float>(eps),
                                .renorm = true, .renorm_momentum = 0.7f};
    BatchNormalization bn(3, o);
    bn.train();
    std::vector<double> mean(3, 0.0), stddev(3, 1.0);
    for (uint64_t step = 0; step < 20; ++step) {
      const Tensor x = param(shape, 100 + step, -1.0f, 3.0f);  // a mean and spread that move the statistics
      const int64_t rows = x.numel() / 3;
      for (int64_t k = 0; k < 3; ++k) {
        double mu = 0, var = 0;
        for (int64_t i = 0; i < rows; ++i) mu += x.data()[i * 3 + k] / double(rows);
        for (int64_t i = 0; i < rows; ++i) var += std::pow(x.data()[i * 3 + k] - mu, 2) / double(rows);
        mean[k] = momentum * mean[k] + (1 - momentum) * mu;
        stddev[k] = momentum * stddev[k] + (1 - momentum) * std::sqrt(var + eps);
      }
      bn.forward(x);
    }
    for (int64_t k = 0; k < 3; ++k) {
      REQUIRE(bn.moving_mean().data()[k] == Approx(mean[k]).margin(1e-5));
      REQUIRE(bn.moving_stddev().data()[k] == Approx(stddev[k]).margin(1e-5));
      REQUIRE(bn.moving_variance().data()[k] == Approx(std::max(stddev[k] * stddev[k] - eps, 0.0)).margin(1e-5));
    }
  }
}

TEST_CASE("a renorm checkpoint without moving_stddev loads with it derived as sqrt(moving_variance + ε)",
          "[normalization][checkpoint]") {
  BatchNormalization bn(2, {.epsilon = 0.01f, .renorm = true});
  std::map<std::string, Tensor> old;  // what minidl wrote before moving_stddev
  for (const auto& [name, t] : bn.state()) old[name] = t.clone();
  old.erase("moving_stddev");
  old["moving_variance"] = Tensor::from({2}, {0.5f, 2.0f});
  bn.load_state(old);
  REQUIRE(bn.moving_stddev().data()[0] == Approx(std::sqrt(0.51)).margin(1e-6));
  REQUIRE(bn.moving_stddev().data()[1] == Approx(std::sqrt(2.01)).margin(1e-6));
  REQUIRE(bn.moving_variance().data()[1] == 2.0f);
}

TEST_CASE("frozen statistics: training normalises with the moving statistics, which stay, while γ and β learn",
          "[normalization]") {
  BatchNormalization bn(3);
  bn.moving_mean().copy_(Tensor::from({3}, {0.2f, -0.1f, 0.5f}));
  bn.moving_variance().copy_(Tensor::from({3}, {1.5f, 0.7f, 2.0f}));
  const Tensor x = param({5, 3}, 16, -2.0f, 2.0f);
  bn.train();
  bn.freeze_statistics(true);
  const Tensor y = bn.forward(x);
  std::vector<double> expected(15);
  for (int64_t i = 0; i < 15; ++i)
    expected[i] = (x.data()[i] - bn.moving_mean().data()[i % 3]) / std::sqrt(bn.moving_variance().data()[i % 3] + 1e-3);
  require_near(y, expected);
  REQUIRE(bn.moving_mean().to_vector() == std::vector<float>{0.2f, -0.1f, 0.5f});
  REQUIRE(bn.min_training_batch({1, 3}) == 1);
  sum(y).backward();
  REQUIRE(bn.beta().grad().data()[0] == Approx(5.0f));

  // The callback freezes only the last epochs, from the epoch number.
  const DatasetSplits data = make_synthetic(64, 16, 3);
  Generator gen(1);
  const auto model = test::document_model("running", gen);
  Adam adam(model->named_parameters(true));
  DataLoader loader(data.train, {.batch_size = 16, .seed = 2}, true);
  Trainer trainer(*model, adam, loader, {.epochs = 3});
  trainer.add_callback(std::make_shared<FreezeBatchNormStatistics>(1));
  auto& layer = dynamic_cast<BatchNormalization&>(*model->children()[2]);
  std::vector<std::vector<float>> means;
  auto record = std::make_shared<LambdaCallback>();
  record->epoch_end = [&](Trainer&, const EpochLogs&) { means.push_back(layer.moving_mean().to_vector()); };
  trainer.add_callback(record);
  trainer.fit();
  REQUIRE(means.size() == 3);
  REQUIRE(means[1] != means[0]);  // epoch 2 still updates
  REQUIRE(means[2] == means[1]);  // epoch 3 is frozen
  REQUIRE(layer.statistics_frozen());
}

TEST_CASE("the norm modes build their layers from bn, and the kinds from the grammar", "[normalization][models]") {
  ModelConfig c;
  c.input_shape = {20};
  c.description = "dense:16,relu,bn,dense:10,softmax";
  const auto type_of_bn = [&](const std::string& mode) {
    c.norm = mode;
    return build_model(c)->children()[2]->type_name();
  };
  REQUIRE(type_of_bn("layer") == "LayerNormalization");
  c.norm_options["groups"] = 4;
  REQUIRE(type_of_bn("group") == "GroupNormalization");
  REQUIRE(type_of_bn("ghost") == "BatchNormalization");
  c.norm = "ghost";
  REQUIRE(build_model(c)->training_batch_multiple() == norm_kind("ghost").option("virtual_batch_size")->fallback);
  c.norm = "renorm";
  REQUIRE(build_model(c)->state().size() == 11);  // 8 + moving_stddev, renorm_mean and renorm_stddev
  c.norm = "running";
  c.description = "dense:16,layernorm,relu,dense:8,groupnorm:2,bn:virtual_batch_size=4:renorm=1:rmax=2,dense:10,softmax";
  const auto model = build_model(c);
  REQUIRE(model->children()[1]->type_name() == "LayerNormalization");
  REQUIRE(dynamic_cast<GroupNormalization&>(*model->children()[4]).groups() == 2);
  const auto& bn = dynamic_cast<BatchNormalization&>(*model->children()[5]);
  REQUIRE(bn.options().virtual_batch_size == 4);
  REQUIRE(bn.options().renorm);
  REQUIRE(bn.options().rmax == 2.0f);
  // The settings travel with a checkpoint's metadata.
  // Each kind's own: a kind's settings are recorded with it (and another kind's are not).
  c.norm_options = {{"groups", 4}, {"virtual_batch_size", 16}, {"rmax", 3}, {"renorm_momentum", 0.9f}};
  c.norm = "renorm";
  const ModelConfig back = ModelConfig::from_metadata(MetadataReader(c.to_metadata(), "test"));
  REQUIRE(back.norm_option("rmax") == 3.0);
  REQUIRE(std::isnan(back.norm_option("rmin")));
  REQUIRE(back.norm_option("renorm_momentum") == 0.9f);
  REQUIRE(back.norm_options.count("groups") == 0);
  c.norm = "ghost";
  REQUIRE(ModelConfig::from_metadata(MetadataReader(c.to_metadata(), "test")).norm_option("virtual_batch_size") == 16);
  c.norm = "group";
  REQUIRE(ModelConfig::from_metadata(MetadataReader(c.to_metadata(), "test")).norm_option("groups") == 4);
}

TEST_CASE("bad normalisation settings are refused, naming the layer and the fix", "[normalization][errors]") {
  const auto error_of = [](const std::function<void()>& f) {
    try {
      f();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  using Catch::Matchers::Contains;
  REQUIRE_THAT(error_of([] { norm_kind("instance"); }), Contains("choose one of running") && Contains("frozen"));
  REQUIRE_THAT(error_of([] { GroupNormalization(10, 4); }), Contains("groups must divide the 10 channels"));
  REQUIRE_THAT(error_of([] {
                 BatchNormalizationOptions o{.renorm = true};
                 o.rmax = 0.5f;
                 BatchNormalization(3, o);
               }),
               Contains("rmax must be >= 1"));
  REQUIRE_THAT(error_of([] {
                 BatchNormalizationOptions o;
                 o.dmax = 1.0f;
                 BatchNormalization(3, o);
               }),
               Contains("renorm is off"));
  ModelConfig c;
  c.input_shape = {20};
  c.description = "dense:12,bn,dense:10,softmax";
  c.norm = "group";
  REQUIRE_THAT(error_of([&] { build_model(c); }),
               Contains("layer 2 'bn'") && Contains("32 groups do not divide the 12 channels") && Contains("--groups"));
  c.norm = "running";
  c.description = "dense:12,bn:virtual_batch_size=x,dense:10,softmax";
  REQUIRE_THAT(error_of([&] { build_model(c); }), Contains("virtual_batch_size must be a whole number"));
  // A batch the ghost batches do not divide: refused before the first step, and by the layer itself.
  const DatasetSplits data = make_synthetic(72, 24, 3);  // 72 = 6 · 12
  c.description = "dense:12,bn:virtual_batch_size=8,dense:10,softmax";
  c.input_shape = data.train.sample;
  const auto model = build_model(c);
  Adam adam(model->named_parameters(true));
  DataLoader loader(data.train, {.batch_size = 12}, true);
  REQUIRE_THAT(error_of([&] { Trainer(*model, adam, loader); }),
               Contains("ghost batches of 8") && Contains("the batch size is 12"));
  const DatasetSplits sixty = make_synthetic(60, 24, 3);  // 60 = 16 + 16 + 16 + 12
  DataLoader short_last(sixty.train, {.batch_size = 16}, true);
  REQUIRE_THAT(error_of([&] { Trainer(*model, adam, short_last); }),
               Contains("the last batch of each epoch is 12") && Contains("drop_last"));
  DataLoader dropped(sixty.train, {.batch_size = 16, .drop_last = true}, true);
  REQUIRE_THAT(error_of([&] { Trainer(*model, adam, dropped); }), Contains("no error"));
  model->train();
  REQUIRE_THAT(error_of([&] { model->forward(Tensor::zeros({12, data.train.features()})); }),
               Contains("virtual_batch_size must divide the batch"));
  // Evaluation with batch statistics normalises each whole batch by itself, ghost batches or not: any batch of
  // two or more will do.
  REQUIRE_THAT(error_of([&] { check_evaluation(*model, data.test, 12, true, "the batch size"); }), Contains("no error"));
  REQUIRE_THAT(error_of([&] { evaluate(*model, data.test, 12, true); }), Contains("no error"));
}

TEST_CASE("Normalization (Keras's preprocessing layer): adapted mean and variance, (x − mean) / max(√var, 1e-7)",
          "[normalization]") {
  FeatureNormalization n(3);
  CHECK(n.name() == "normalization");
  CHECK_FALSE(n.adapted());
  CHECK_THROWS_WITH(n.forward(Tensor::zeros({2, 3})), Catch::Contains("has not been adapted"));
  // Feature 0 far from zero (no cancellation in double), feature 1 small, feature 2 constant (divisor 1e-7).
  const Tensor x = Tensor::from({4, 3}, {1e6f + 1, 0.01f, 5, 1e6f + 3, 0.03f, 5, 1e6f + 5, 0.02f, 5, 1e6f + 7, 0.02f, 5});
  n.adapt(x);
  CHECK(n.adapted());
  CHECK(n.mean().to_vector() == std::vector<float>{1e6f + 4, 0.02f, 5});
  CHECK(n.variance().data()[0] == Approx(5.0));  // population variance of 1, 3, 5, 7
  CHECK(n.variance().data()[1] == Approx(0.00005).epsilon(1e-4));
  CHECK(n.variance().data()[2] == 0.0f);
  const Tensor y = n.forward(Tensor::from({1, 3}, {1e6f + 6, 0.04f, 6}));
  CHECK(y.data()[0] == Approx(2 / std::sqrt(5.0)).epsilon(1e-6));
  CHECK(y.data()[1] == Approx(0.02 / std::sqrt(0.00005)).epsilon(1e-4));
  CHECK(y.data()[2] == Approx(1e7).epsilon(1e-6));
  // Images: per channel, over every position of every sample; batch by batch gives the same statistics.
  FeatureNormalization channels(2), batched(2);
  const Tensor images = param({3, 4, 4, 2}, 5, -2.0f, 3.0f).detach();
  channels.adapt(images);
  FeatureNormalization::Accumulator a;
  for (int64_t i = 0; i < 3; ++i)
    a.add(Tensor::from({1, 4, 4, 2}, {images.data() + i * 32, size_t{32}}));
  batched.adapt(a);
  for (int c = 0; c < 2; ++c) {
    double mean = 0, var = 0;
    for (int64_t i = c; i < images.numel(); i += 2) mean += images.data()[i] / 48.0;
    for (int64_t i = c; i < images.numel(); i += 2) var += std::pow(images.data()[i] - mean, 2) / 48.0;
    CHECK(channels.mean().data()[c] == Approx(mean).epsilon(1e-6));
    CHECK(channels.variance().data()[c] == Approx(var).epsilon(1e-5));
    CHECK(batched.mean().data()[c] == Approx(channels.mean().data()[c]).epsilon(1e-6));
    CHECK(batched.variance().data()[c] == Approx(channels.variance().data()[c]).epsilon(1e-6));
  }
  // The statistics are buffers: a checkpoint holds them, and nothing trains them.
  CHECK(n.named_parameters().empty());
  FeatureNormalization restored(3);
  const NamedTensors state = n.state();
  restored.load_state(std::map<std::string, Tensor>(state.begin(), state.end()));
  CHECK(restored.adapted());
  CHECK(restored.forward(Tensor::from({1, 3}, {1e6f + 6, 0.04f, 6})).to_vector() == y.to_vector());
  // Through the input it transforms, the gradient is the scaling.
  require_grad_ok([&](const Inputs& v) { return channels.forward(reshape(v[0], {1, 1, 3, 2})); }, {param({3, 2}, 7)});
}

TEST_CASE("normalize in a description adapts to the data the model sees: layers before it run, images by channel",
          "[normalization]") {
  DatasetSplits data = make_synthetic(64, 8, 3);
  ModelConfig config;
  config.description = "normalize,dense:4,relu,normalize,dense:10,softmax";
  auto model = build_model(config);
  CHECK(model->input_shape() == Shape{784});  // the next layer (dense) takes vectors: per-pixel statistics
  CHECK(adapt_normalization(*model, data.train, 10) == 2);
  const auto& first = dynamic_cast<const FeatureNormalization&>(*model->children()[0]);
  const Tensor x = data.train.to_tensor();
  double mean = 0;
  for (int64_t r = 0; r < 64; ++r) mean += x.data()[r * 784 + 400] / 64.0;
  CHECK(first.mean().data()[400] == Approx(mean).epsilon(1e-6));
  // The second layer's statistics are those of the first three layers' output: zero mean per unit afterwards.
  const auto& second = dynamic_cast<const FeatureNormalization&>(*model->children()[3]);
  CHECK(second.adapted());
  Sequential prefix;
  for (int i = 0; i < 3; ++i) prefix.add(model->children()[i]);
  const Tensor h = predict(prefix, x);
  for (int j = 0; j < 4; ++j) {
    double m = 0;
    for (int64_t r = 0; r < 64; ++r) m += h.data()[r * 4 + j] / 64.0;
    CHECK(second.mean().data()[j] == Approx(m).margin(1e-5));
  }
  config.description = "normalize,conv:4x3,flatten,dense:10,softmax";
  CHECK(build_model(config)->input_shape() == Shape{28, 28, 1});  // before a convolution: images, one channel
}
