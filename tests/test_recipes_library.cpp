// Tests of the training recipes in the library: label smoothing (smooth_labels, TrainerOptions::label_smoothing),
// the learning-rate warm-up (CosineDecay's warmup_target, LinearWarmup), clipping by the global norm
// (ClipGradientNorm) and EarlyStopping's state across a resume — each against the formula computed here in double.
#include <cmath>

#include "helpers.h"
#include "minidl/callbacks.h"
#include "minidl/nn.h"
#include "minidl/train.h"

using namespace minidl;

namespace {
const DatasetSplits& synthetic() {
  static const DatasetSplits data = make_synthetic(600, 200, 13);
  return data;
}

// A model, its Adam, a loader and a Trainer on the synthetic set.
struct Pieces {
  explicit Pieces(TrainerOptions options, const std::string& description = "dense:16,relu,bn,dense:10,softmax") {
    ModelConfig c;
    c.description = description;
    c.seed = 5;
    model = build_model(c);
    adam = std::make_unique<Adam>(model->named_parameters(true));
    loader = std::make_unique<DataLoader>(synthetic().train, LoaderOptions{.batch_size = 50, .seed = 2}, true);
    trainer = std::make_unique<Trainer>(*model, *adam, *loader, options);
  }
  std::shared_ptr<Sequential> model;
  std::unique_ptr<Adam> adam;
  std::unique_ptr<DataLoader> loader;
  std::unique_ptr<Trainer> trainer;
};

// The learning rate of every step a Trainer runs with `schedule`.
std::vector<float> rates_of(std::shared_ptr<Callback> schedule, int64_t steps) {
  Pieces p({.epochs = 1, .max_steps = steps});
  std::vector<float> used;
  auto record = std::make_shared<LambdaCallback>();
  record->step_end = [&](Trainer& t, const StepResult&) { used.push_back(t.optimizer().learning_rate()); };
  p.trainer->add_callback(std::move(schedule)).add_callback(record);
  p.trainer->fit();
  return used;
}
}  // namespace

TEST_CASE("smooth_labels is Keras's label_smoothing: y(1 - s) + s/K, binary y(1 - s) + s/2", "[recipes]") {
  const Tensor one_hot = Tensor::from({2, 4}, {0, 1, 0, 0, 1, 0, 0, 0});
  test::require_values(smooth_labels(Loss::categorical_crossentropy, one_hot, 0.2f), {2, 4},
                       {0.05f, 0.85f, 0.05f, 0.05f, 0.85f, 0.05f, 0.05f, 0.05f}, 1e-7f);
  const Tensor labels = Tensor::from({3, 1}, {1, 0, 1});
  test::require_values(smooth_labels(Loss::binary_crossentropy, labels, 0.2f), {3, 1}, {0.9f, 0.1f, 0.9f}, 1e-7f);
  CHECK(smooth_labels(Loss::categorical_crossentropy, one_hot, 0.0f).data() == one_hot.data());  // y itself
  CHECK_THROWS_WITH(smooth_labels(Loss::categorical_crossentropy, one_hot, 1.5f),
                    Catch::Contains("label smoothing must be in [0, 1], got 1.5"));
  CHECK_THROWS_WITH(smooth_labels(Loss::mse, one_hot, 0.1f), Catch::Contains("not mse"));
}

TEST_CASE("label smoothing: the loss is -sum of the smoothed targets times log softmax, its gradient checks", "[recipes]") {
  const std::vector<float> z = {0.3f, -1.2f, 2.0f, 0.1f, -0.4f, 0.9f};  // two rows of three logits
  const Tensor y = smooth_labels(Loss::categorical_crossentropy, Tensor::from({2, 3}, {0, 0, 1, 1, 0, 0}), 0.1f);
  double expected = 0.0;
  for (int r = 0; r < 2; ++r) {
    double denominator = 0.0;
    for (int c = 0; c < 3; ++c) denominator += std::exp(static_cast<double>(z[r * 3 + c]));
    for (int c = 0; c < 3; ++c) expected -= y.data()[r * 3 + c] * (z[r * 3 + c] - std::log(denominator));
  }
  expected /= 2.0;
  const Tensor loss = categorical_crossentropy(y, softmax(Tensor::from({2, 3}, z)));
  CHECK(loss.item() == Approx(expected).epsilon(1e-6));
  Tensor logits = Tensor::from({2, 3}, z);
  logits.set_requires_grad(true);
  test::require_grad_ok([&](const std::vector<Tensor>& in) { return categorical_crossentropy(y, softmax(in[0])); }, {logits});
}

TEST_CASE("TrainerOptions::label_smoothing trains and validates with the smoothed loss, as Keras's compiled loss", "[recipes]") {
  Pieces smoothed({.epochs = 2, .validation = &synthetic().test, .label_smoothing = 0.1f});
  Pieces plain({.epochs = 2, .validation = &synthetic().test});
  const std::vector<EpochLogs> a = smoothed.trainer->fit(), b = plain.trainer->fit();
  REQUIRE(a.size() == 2);
  REQUIRE(b.size() == 2);
  // The validation loss is the smoothed one, and differs from the plain loss of the same weights.
  const Evaluation with = evaluate(*smoothed.model, synthetic().test, kDefaultBatchSize, false, std::nullopt, nullptr, 0.1f);
  const Evaluation without = evaluate(*smoothed.model, synthetic().test, kDefaultBatchSize);
  CHECK(a[1].val_loss == with.loss);
  CHECK(with.loss != Approx(without.loss).epsilon(1e-3));
  CHECK(a[0].loss != b[0].loss);
  CHECK_THROWS_WITH(loss_forward(Loss::mse, 0.1f), Catch::Contains("not mse"));
  CHECK_THROWS_WITH(
      Pieces({.label_smoothing = 0.1f, .forward = categorical_forward}),
      Catch::Contains("label_smoothing applies to the default forward"));
}

TEST_CASE("CosineDecay's warm-up is Keras 3's: linear from initial to the target, then the decay from it", "[recipes]") {
  // Keras: t < W: initial + (target − initial)·t/W; then target·((1 − α)·½(1 + cos(π·min(t − W, D)/D)) + α).
  const double initial = 0.001, target = 0.01, alpha = 0.1;
  const int64_t warm = 4, decay = 6;
  const std::vector<float> used = rates_of(std::make_shared<CosineDecay>(0.001f, decay, 0.1f, 0.01f, warm), 12);
  REQUIRE(used.size() == 12);
  for (int64_t t = 0; t < 12; ++t) {
    const double expected =
        t < warm ? initial + (target - initial) * static_cast<double>(t) / warm
                 : target * ((1 - alpha) * 0.5 * (1 + std::cos(M_PI * static_cast<double>(std::min(t - warm, decay)) / decay)) + alpha);
    INFO("step " << t);
    CHECK(used[static_cast<size_t>(t)] == Approx(expected).epsilon(1e-6));
  }
  CHECK(used[4] == 0.01f);  // the target, at the first step after the warm-up
  CHECK_THROWS_WITH(CosineDecay(0.0f, 10, 0.0f, -1.0f, 5), Catch::Contains("warm-up target must be a finite number >= 0"));
  CHECK_THROWS_WITH(CosineDecay(0.0f, 10, 0.0f, 0.1f, -1), Catch::Contains("warmup_steps must be >= 0, got -1"));
}

TEST_CASE("LinearWarmup rises from 0 to the target over its steps, then holds it", "[recipes]") {
  const std::vector<float> used = rates_of(std::make_shared<LinearWarmup>(0.004f, 4), 7);
  REQUIRE(used.size() == 7);
  const std::vector<double> expected = {0.0, 0.001, 0.002, 0.003, 0.004, 0.004, 0.004};
  for (size_t t = 0; t < used.size(); ++t) CHECK(used[t] == Approx(expected[t]).epsilon(1e-7));
  CHECK_THROWS_WITH(LinearWarmup(0.01f, 0), Catch::Contains("warmup_steps must be >= 1, got 0"));
  CHECK_THROWS_WITH(LinearWarmup(NAN, 3), Catch::Contains("target learning rate must be a finite number"));
}

TEST_CASE("ClipGradientNorm scales every gradient by C / max(global norm, C), as tf.clip_by_global_norm", "[recipes]") {
  for (const float clip : {1e-3f, 1e6f}) {
    INFO("clip_norm " << clip);
    Pieces p({.epochs = 1, .max_steps = 3});
    std::vector<std::vector<float>> before, after;
    const auto copy = [](Trainer& t, std::vector<std::vector<float>>& into) {
      into.clear();
      for (const Tensor& param : t.model().parameters()) into.push_back(param.grad().to_vector());
    };
    auto first = std::make_shared<LambdaCallback>(), last = std::make_shared<LambdaCallback>();
    first->after_backward = [&](Trainer& t) { copy(t, before); };
    last->after_backward = [&](Trainer& t) { copy(t, after); };
    auto clipper = std::make_shared<ClipGradientNorm>(clip);
    p.trainer->add_callback(first).add_callback(clipper).add_callback(last);
    p.trainer->fit();
    double squares = 0.0;
    for (const auto& g : before)
      for (const float v : g) squares += static_cast<double>(v) * v;
    const double norm = std::sqrt(squares);
    CHECK(clipper->last_norm() == Approx(norm).epsilon(1e-12));
    const double scale = clip / std::max(norm, static_cast<double>(clip));
    REQUIRE(after.size() == before.size());
    double clipped = 0.0;
    for (size_t i = 0; i < before.size(); ++i)
      for (size_t k = 0; k < before[i].size(); ++k) {
        clipped += static_cast<double>(after[i][k]) * after[i][k];
        if (scale == 1.0) CHECK(after[i][k] == before[i][k]);  // under the bound: untouched, bit for bit
        else CHECK(after[i][k] == Approx(before[i][k] * scale).epsilon(1e-6));
      }
    CHECK(std::sqrt(clipped) == Approx(std::min(norm, static_cast<double>(clip))).epsilon(1e-5));
  }
  CHECK_THROWS_WITH(ClipGradientNorm(0.0f), Catch::Contains("clip_norm must be a finite number > 0, got 0"));
}

TEST_CASE("EarlyStopping counts its patience on across a resume and a stopped run stays stopped", "[recipes]") {
  test::TempDir dir;
  const EarlyStoppingOptions watch{.monitor = "val_accuracy", .min_delta = 0.02, .patience = 2};
  const TrainerOptions options{.epochs = 20, .validation = &synthetic().test};
  Pieces straight(options);
  auto stop = std::make_shared<EarlyStopping>(watch);
  straight.trainer->add_callback(stop);
  const size_t epochs = straight.trainer->fit().size();
  REQUIRE(stop->stopped_epoch() > 2);
  REQUIRE(static_cast<size_t>(stop->stopped_epoch()) == epochs);

  // Saved after the epoch before the stop, then resumed: it stops after the same epoch with the same weights.
  Pieces first(TrainerOptions{.epochs = stop->stopped_epoch() - 1, .validation = &synthetic().test});
  auto first_stop = std::make_shared<EarlyStopping>(watch);
  first.trainer->add_callback(first_stop);
  first.trainer->fit();
  first.trainer->save(dir.file("before"));
  const Checkpoint saved = load_safetensors(dir.file("before"));
  CHECK(saved.metadata.at("early_stopping.monitor") == "val_accuracy");
  CHECK(saved.metadata.at("early_stopping.wait") == "1");
  Pieces resumed(options);
  auto resumed_stop = std::make_shared<EarlyStopping>(watch);
  resumed.trainer->add_callback(resumed_stop);
  resumed.trainer->resume(saved, dir.file("before"));
  CHECK(resumed.trainer->fit().size() == 1);
  CHECK(resumed_stop->stopped_epoch() == stop->stopped_epoch());
  CHECK(resumed_stop->best() == stop->best());
  CHECK(resumed.model->state()[0].second.to_vector() == straight.model->state()[0].second.to_vector());

  // The stopped run's checkpoint resumes to no epoch with the same patience, and trains on with more.
  resumed.trainer->save(dir.file("stopped"));
  Pieces again(options);
  auto same = std::make_shared<EarlyStopping>(watch);
  again.trainer->add_callback(same);
  again.trainer->resume(load_safetensors(dir.file("stopped")), dir.file("stopped"));
  CHECK(again.trainer->fit().empty());
  CHECK(same->stopped_epoch() == stop->stopped_epoch());
  Pieces patient(options);
  EarlyStoppingOptions longer = watch;
  longer.patience = 3;
  patient.trainer->add_callback(std::make_shared<EarlyStopping>(longer));
  patient.trainer->resume(load_safetensors(dir.file("stopped")), dir.file("stopped"));
  CHECK(patient.trainer->fit().size() >= 1);
}
