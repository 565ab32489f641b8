// Tests of training: each of the document's three modes learns a synthetic MNIST-like set, the same seed
// repeats the same losses bit for bit, evaluate/predict run in inference mode without a graph.
#include "helpers.h"
#include "minidl/nn.h"
#include "minidl/callbacks.h"
#include "minidl/train.h"

using namespace minidl;

namespace {
const DatasetSplits& synthetic() {
  static const DatasetSplits data = make_synthetic(1500, 300, 11);
  return data;
}

// Trains the document's model in `mode` for `epochs`, as the examples do: fit for running statistics,
// a hand-written loop (train_step) for the other modes. Returns the loss after each step.
std::vector<double> train(const std::string& mode, int epochs, Module** out_model = nullptr) {
  static std::shared_ptr<Sequential> keep;
  Generator gen(7);
  keep = test::document_model(mode, gen);
  Adam adam(keep->parameters());
  std::vector<double> losses;
  DataLoader loader(synthetic().train, {.batch_size = 32, .seed = 3}, true);
  Batch batch;
  for (int e = 0; e < epochs; ++e) {
    loader.start_epoch();
    while (loader.next(batch)) losses.push_back(train_step(*keep, adam, batch).loss);
  }
  if (out_model) *out_model = keep.get();
  return losses;
}
}  // namespace

TEST_CASE("all three modes (and the baseline) reach 95% training accuracy on the synthetic set", "[train]") {
  for (const std::string mode : {"running", "batchwise", "manual", "none"}) {
    INFO("mode " << mode);
    Generator gen(7);
    const auto model = test::document_model(mode, gen);
    Adam adam(model->parameters());
    const auto history = fit(*model, adam, synthetic().train, {.epochs = 3, .seed = 5});
    REQUIRE(history.size() == 3);
    CHECK(history[0].steps == 47);  // ceil(1500 / 32): the partial last batch is kept
    CHECK(history.back().accuracy >= 0.95);
    CHECK(history.back().loss < history.front().loss);
    const Evaluation test = evaluate(*model, synthetic().test, mode == "manual" ? 100 : 32);
    CHECK(test.accuracy >= 0.9);
  }
}

TEST_CASE("the same seed gives the identical loss sequence", "[train]") {
  for (const std::string mode : {"running", "manual"}) {
    Module* model = nullptr;
    const std::vector<double> first = train(mode, 1, &model);
    const std::vector<float> weights = model->state()[0].second.to_vector();
    const std::vector<double> second = train(mode, 1, &model);
    CHECK(first == second);
    CHECK(weights == model->state()[0].second.to_vector());
    CHECK(first.size() == 47);
  }
}

TEST_CASE("fit logs batch-size-weighted means and calls the epoch callback", "[train]") {
  Generator gen(7);
  const auto model = test::document_model("running", gen);
  Adam adam(model->parameters());
  std::vector<int> seen;
  const auto history = fit(*model, adam, synthetic().train.slice(0, 100),
                           {.epochs = 2, .batch_size = 40, .validation_split = 0.2,
                            .on_epoch_end = [&](const EpochLogs& logs) { seen.push_back(logs.epoch); }});
  CHECK(seen == std::vector<int>{1, 2});
  CHECK(history[0].steps == 2);  // 80 training rows: batches of 40 and 40
  CHECK(history[1].val_accuracy >= 0.0);
  CHECK(adam.iterations() == 4);
  CHECK(model->is_training());
}

TEST_CASE("evaluate and predict run in inference mode without building a graph", "[train]") {
  Generator gen(7);
  const auto model = test::document_model("running", gen);
  const Dataset& test = synthetic().test;
  const int64_t nodes = live_graph_nodes();
  const std::vector<float> moving_before = model->named_buffers()[0].second.to_vector();
  const Evaluation e = evaluate(*model, test, 64);
  const Tensor p = predict(*model, test.to_tensor(), 64);
  CHECK(live_graph_nodes() == nodes);
  CHECK(model->named_buffers()[0].second.to_vector() == moving_before);  // no moving update
  CHECK(model->is_training());  // the previous mode is restored
  CHECK(p.shape() == Shape{300, 10});
  std::vector<int32_t> labels = test.labels;
  CHECK(accuracy(labels, p) == Approx(e.accuracy));
  CHECK(e.loss == Approx(categorical_crossentropy(one_hot(labels, 10), p).item()).epsilon(1e-5));
}

TEST_CASE("the normalisation kind is looked up with a clear error", "[train]") {
  CHECK(norm_kind("batchwise").name == "batchwise");
  CHECK_THROWS_WITH(norm_kind("fast"), "unknown normalisation mode 'fast': choose one of running, batchwise, "
                                       "manual, none, ghost, renorm, layer, group, frozen, rms");
}

namespace {
// The pieces of a run on the synthetic set: model, Adam, loader, trainer.
struct Pieces {
  explicit Pieces(const std::string& description, TrainerOptions options = {.epochs = 2}, int64_t batch = 32) {
    ModelConfig c;
    c.description = description;
    c.seed = 9;
    model = build_model(c);
    adam = std::make_unique<Adam>(model->named_parameters(true));
    loader = std::make_unique<DataLoader>(synthetic().train, LoaderOptions{.batch_size = batch, .seed = 4}, true);
    trainer = std::make_unique<Trainer>(*model, *adam, *loader, options);
  }
  std::shared_ptr<Sequential> model;
  std::unique_ptr<Adam> adam;
  std::unique_ptr<DataLoader> loader;
  std::unique_ptr<Trainer> trainer;
};
}  // namespace

TEST_CASE("the Trainer's loop equals the hand-written one, and fit goes through it", "[train]") {
  Pieces p(kDocumentModel);
  const auto history = p.trainer->fit();
  REQUIRE(history.size() == 2);
  CHECK(history[0].steps == 47);
  // The same steps by hand.
  ModelConfig c;
  c.seed = 9;
  const auto model = build_model(c);
  Adam adam(model->parameters());
  DataLoader loader(synthetic().train, {.batch_size = 32, .seed = 4}, true);
  Batch batch;
  for (int e = 0; e < 2; ++e) {
    loader.start_epoch();
    while (loader.next(batch)) train_step(*model, adam, batch);
  }
  const NamedTensors a = p.model->state(), b = model->state();
  for (size_t i = 0; i < a.size(); ++i) CHECK(a[i].second.to_vector() == b[i].second.to_vector());
}

TEST_CASE("callbacks run in order — the hook after backward sees gradients before the step", "[train]") {
  Pieces p(kDocumentModel, {.epochs = 2, .max_steps = 50});
  std::vector<std::string> events;
  auto spy = std::make_shared<LambdaCallback>();
  spy->train_begin = [&](Trainer&) { events.push_back("train_begin"); };
  spy->epoch_begin = [&](Trainer& t) { events.push_back("epoch_begin " + std::to_string(t.epoch())); };
  spy->after_backward = [&](Trainer& t) {
    // Gradients exist and the step has not happened: zero one, so that parameter never moves.
    REQUIRE(t.model().parameters()[1].grad().defined());
    t.model().parameters()[1].grad().fill_(0.0f);
  };
  spy->epoch_end = [&](Trainer&, const EpochLogs& e) { events.push_back("epoch_end " + std::to_string(e.steps)); };
  spy->train_end = [&](Trainer&) { events.push_back("train_end"); };
  p.trainer->add_callback(spy);
  p.trainer->fit();
  CHECK(events == std::vector<std::string>{"train_begin", "epoch_begin 1", "epoch_end 47", "epoch_begin 2",
                                           "epoch_end 3", "train_end"});
  CHECK(p.model->named_parameters()[1].second.to_vector() == std::vector<float>(64, 0.0f));  // dense/bias: untouched
  CHECK(p.trainer->steps_done() == 50);
}

TEST_CASE("EarlyStopping and LearningRateScheduler act as Keras's", "[train]") {
  Pieces p(kDocumentModel, {.epochs = 30, .validation = &synthetic().test});
  auto stop = std::make_shared<EarlyStopping>(EarlyStoppingOptions{.monitor = "val_accuracy", .min_delta = 2.0, .patience = 1});
  std::vector<float> rates;
  auto schedule = std::make_shared<LearningRateScheduler>([&](int epoch, float lr) {
    rates.push_back(lr);
    return epoch == 0 ? lr : lr * 0.5f;
  });
  p.trainer->add_callback(stop).add_callback(schedule);
  const auto history = p.trainer->fit();
  // No epoch can improve accuracy by 2: the first sets the best, the next one without improvement stops it.
  CHECK(history.size() == 2);
  CHECK(stop->stopped_epoch() == 2);
  CHECK(rates == std::vector<float>{1e-3f, 1e-3f});
  CHECK(p.adam->learning_rate() == 5e-4f);
  CHECK_THROWS_WITH(EarlyStopping({.monitor = "val_acc"}), Catch::Contains("unknown monitor 'val_acc'"));
}

TEST_CASE("CosineDecay sets Keras's cosine learning rate before every step", "[train]") {
  Pieces p(kDocumentModel, {.epochs = 1, .max_steps = 14});
  auto decay = std::make_shared<CosineDecay>(0.01f, 10, 0.1f);
  std::vector<float> used;
  auto record = std::make_shared<LambdaCallback>();
  record->step_end = [&](Trainer& t, const StepResult&) { used.push_back(t.optimizer().learning_rate()); };
  p.trainer->add_callback(decay).add_callback(record);
  p.trainer->fit();
  REQUIRE(used.size() == 14);
  for (int t = 0; t < 14; ++t) {  // Keras: initial · ((1 − alpha) · ½(1 + cos(π · min(t, 10) / 10)) + alpha)
    const double expected = 0.01 * (0.9 * 0.5 * (1.0 + std::cos(M_PI * std::min(t, 10) / 10.0)) + 0.1);
    INFO("step " << t);
    CHECK(used[static_cast<size_t>(t)] == Approx(expected).epsilon(1e-6));
  }
  CHECK(used[0] == 0.01f);
  CHECK(used[13] == Approx(0.001).epsilon(1e-6));  // alpha · initial after decay_steps
  CHECK_THROWS_WITH(CosineDecay(0.01f, 0), Catch::Contains("decay_steps must be >= 1, got 0"));
  CHECK_THROWS_WITH(CosineDecay(0.01f, 10, 2.0f), Catch::Contains("alpha must be in [0, 1], got 2"));
}

TEST_CASE("a training checkpoint resumes exactly, dropout masks included, with slots named by parameter", "[train]") {
  test::TempDir dir;
  const std::string d = "dense:32,relu,dropout:0.3,bn,dense:10,softmax";
  Pieces straight(d, {.epochs = 2});
  straight.trainer->fit();
  Pieces half(d, {.epochs = 2, .max_steps = 60});
  half.trainer->fit();
  half.trainer->save(dir.file("half"));
  const Checkpoint saved = load_safetensors(dir.file("half"));
  CHECK(saved.tensors.count("optimizer/m/dense/kernel") == 1);
  CHECK(saved.metadata.at("trainer.step") == "60");
  CHECK(saved.metadata.count("rng.dropout/seed_generator") == 1);
  Pieces resumed(d, {.epochs = 2});
  resumed.trainer->resume(saved, dir.file("half"));
  CHECK(resumed.trainer->steps_done() == 60);
  resumed.trainer->fit();
  const NamedTensors a = straight.model->state(), b = resumed.model->state();
  for (size_t i = 0; i < a.size(); ++i) CHECK(a[i].second.to_vector() == b[i].second.to_vector());
  // A loader configured otherwise would continue elsewhere: refused, naming both values.
  Pieces other(d, {.epochs = 2}, 64);
  CHECK_THROWS_WITH(other.trainer->resume(saved, "half"),
                    "checkpoint 'half' was written with batch size 32 but the loader has 64: the saved data position "
                    "would point elsewhere — use the checkpoint's value");
  CHECK(other.trainer->steps_done() == 0);  // nothing changed
}

TEST_CASE("a crafted data position is refused before it is used", "[train]") {
  test::TempDir dir;
  Pieces p(kDocumentModel);
  p.trainer->save(dir.file("c"));
  for (const auto& [key, value, message] : std::vector<std::tuple<std::string, std::string, std::string>>{
           {"loader.next_batch", "-5", "metadata 'loader.next_batch' is -5, expected a whole number in [0, 47]"},
           {"loader.next_batch", "48", "metadata 'loader.next_batch' is 48, expected a whole number in [0, 47]"},
           {"loader.epoch", "-1", "metadata 'loader.epoch' is -1"},
           {"trainer.step", "-3", "metadata 'trainer.step' is -3"},
           {"trainer.step", "1e20", "metadata 'trainer.step' is '1e20', expected a whole number"},
           {"loader.rng", "zz", "metadata 'loader.rng' is 'zz', expected four hexadecimal words"}}) {
    Checkpoint c = load_safetensors(dir.file("c"));
    c.metadata[key] = value;
    Pieces q(kDocumentModel);
    INFO(key << " = " << value);
    CHECK_THROWS_WITH(q.trainer->resume(c, "c"), Catch::Contains(message));
  }
}

TEST_CASE("a 1-sample last batch is skipped for batch normalisation, with a warning — the Trainer refuses it", "[train]") {
  const DatasetSplits data = make_synthetic(2001, 10, 3);
  ModelConfig c;
  const auto model = build_model(c);
  std::vector<std::string> warnings;
  const WarningHandler previous = set_warning_handler([&](const std::string& w) { warnings.push_back(w); });
  const LoaderOptions options = training_loader_options(*model, data.train, {.batch_size = 40});
  set_warning_handler(previous);
  CHECK(options.min_batch_size == 2);
  REQUIRE(warnings.size() == 1);
  CHECK_THAT(warnings[0], Catch::Contains("would hold 1 sample (2001 samples, batch 40)"));
  Adam adam(model->parameters());
  DataLoader skipping(data.train, options, true);
  CHECK(skipping.batches_per_epoch() == 50);
  Trainer ok(*model, adam, skipping, {.epochs = 1});
  CHECK(ok.fit()[0].steps == 50);
  DataLoader keeping(data.train, {.batch_size = 40}, true);
  CHECK_THROWS_WITH(Trainer(*model, adam, keeping),
                    "Trainer: the last batch of each epoch holds 1 sample (2001 samples, batch size 40) but the model "
                    "needs 2 to train (batch normalisation cannot normalise one sample) — set drop_last, or "
                    "min_batch_size = 2 to skip only a batch that small");
  ModelConfig none = c;
  none.norm = "none";
  const auto plain = build_model(none);
  CHECK(training_loader_options(*plain, data.train, {.batch_size = 40}).min_batch_size == 1);
}

namespace {
// A table of `n` rows of 3 features in [−1, 1) whose targets follow `target(x)` (one or more per row), seeded.
Dataset table(int64_t n, uint64_t seed, int64_t outputs, const std::function<void(const float*, float*)>& target) {
  Dataset d;
  d.sample = {3};
  d.num_classes = 0;
  d.outputs = outputs;
  Generator gen(seed);
  for (int64_t r = 0; r < n; ++r) {
    float x[3] = {gen.uniform(-1, 1), gen.uniform(-1, 1), gen.uniform(-1, 1)};
    d.values.insert(d.values.end(), x, x + 3);
    std::vector<float> y(static_cast<size_t>(outputs));
    target(x, y.data());
    d.targets.insert(d.targets.end(), y.begin(), y.end());
  }
  return d;
}
}  // namespace

TEST_CASE("the Trainer fits regression targets with mse by default: R² near 1 on a linear function", "[train]") {
  const auto linear = [](const float* x, float* y) { y[0] = 2 * x[0] - x[1] + 0.5f, y[1] = x[2] * 3; };
  const Dataset train = table(512, 1, 2, linear), test = table(128, 2, 2, linear);
  ModelConfig config;
  config.description = "dense:2";
  config.input_shape = {3};
  config.classes = 0;
  config.outputs = 2;
  auto model = build_model(config);
  CHECK(default_loss(*model) == Loss::mse);
  Adam adam(model->named_parameters(true), {.learning_rate = 0.05f});
  DataLoader loader(train, {.batch_size = 32, .seed = 3});
  Trainer trainer(*model, adam, loader, {.epochs = 30, .validation = &test});
  const std::vector<EpochLogs> logs = trainer.fit();
  CHECK(logs.back().regression);
  CHECK(logs.back().mae < logs.front().mae);
  CHECK(logs.back().val_r2 > 0.999);
  const Evaluation e = evaluate(*model, test, 50);
  CHECK(e.regression);
  CHECK(std::isnan(e.accuracy));
  CHECK(e.r2 == Approx(logs.back().val_r2));
  CHECK(e.rmse == Approx(std::sqrt(e.loss)).epsilon(1e-6));  // mse's loss is the mean squared error
  CHECK(e.mae <= e.rmse);
  // mae and huber train too, and are what evaluate reports as the loss when asked.
  CHECK(evaluate(*model, test, 50, false, Loss::mae).loss == Approx(e.mae).epsilon(1e-6));
}

TEST_CASE("a sigmoid output trains with binary cross-entropy from its logits: accuracy at 0.5 and AUC", "[train]") {
  // Two classes split by the plane x0 + x1 = 0.
  Dataset data = table(600, 4, 1, [](const float* x, float* y) { y[0] = x[0] + x[1] > 0 ? 1.0f : 0.0f; });
  Dataset classes;
  classes.sample = data.sample;
  classes.values = data.values;
  classes.num_classes = 2;
  for (float t : data.targets) classes.labels.push_back(static_cast<int32_t>(t));
  const auto [train, test] = split_validation(classes, 0.25);
  ModelConfig config;
  config.description = "dense:8,relu,dense:1,sigmoid";
  config.input_shape = {3};
  config.classes = 2;
  auto model = build_model(config);
  Adam adam(model->named_parameters(true), {.learning_rate = 0.02f});
  DataLoader loader(train, {.batch_size = 32, .seed = 5});
  Trainer trainer(*model, adam, loader, {.epochs = 20, .validation = &test});
  CHECK(*trainer.options().loss == Loss::binary_crossentropy);
  const EpochLogs last = trainer.fit().back();
  CHECK(last.val_accuracy > 0.95);
  CHECK(last.val_auc > 0.99);
  const Evaluation e = evaluate(*model, test);
  CHECK(e.accuracy == last.val_accuracy);
  CHECK(e.auc == last.val_auc);
}

TEST_CASE("a loss that does not fit the data or the model is refused before the first step", "[train]") {
  ModelConfig config;
  config.description = "dense:3,softmax";
  config.input_shape = {3};
  config.classes = 3;
  auto model = build_model(config);
  Dataset classes;
  classes.sample = {3};
  classes.values = {1, 2, 3, 4, 5, 6};
  classes.labels = {0, 2};
  classes.num_classes = 3;
  const Dataset values = table(8, 1, 1, [](const float* x, float* y) { y[0] = x[0]; });
  CHECK_THROWS_WITH(check_loss(Loss::mse, *model, classes), Catch::Contains("the loss mse is for regression (float targets), "
                                                                             "but the data has class labels"));
  CHECK_THROWS_WITH(check_loss(Loss::categorical_crossentropy, *model, values),
                    Catch::Contains("is for class labels, but the data has float targets — use mse, mae or huber"));
  CHECK_THROWS_WITH(check_loss(Loss::binary_crossentropy, *model, classes),
                    Catch::Contains("binary cross-entropy takes labels 0 and 1, but the data has 3 classes"));
  CHECK_THROWS_WITH(check_loss(Loss::mse, *model, values),
                    Catch::Contains("the model gives 3 outputs per sample but the data has 1 target — end the model with dense:1"));
  Adam adam(model->named_parameters(true));
  DataLoader loader(values, {.batch_size = 4});
  CHECK_THROWS_WITH(Trainer(*model, adam, loader, {.loss = Loss::categorical_crossentropy}),
                    Catch::Contains("Trainer: the loss categorical_crossentropy is for class labels"));
  // The builder checks a sigmoid output against the classes.
  config.description = "dense:3,sigmoid";
  CHECK_THROWS_WITH(build_model(config), Catch::Contains("a sigmoid output scores one class against the other"));
  config.description = "dense:2";
  config.classes = 0;
  config.outputs = 3;
  CHECK_THROWS_WITH(build_model(config), Catch::Contains("the data has 3 targets to predict: end it with dense:3"));
}

TEST_CASE("train_step takes the loss the model implies: mse on a regression batch", "[train]") {
  const Dataset data = table(64, 9, 1, [](const float* x, float* y) { y[0] = x[0] - 2 * x[2]; });
  Sequential model;
  Generator gen(1);
  model.add(std::make_shared<Dense>(3, 1, Activation::none, gen));
  SGD sgd(model.parameters(), {.learning_rate = 0.1f});
  DataLoader loader(data, {.batch_size = 64, .shuffle = false});
  loader.start_epoch();
  Batch batch;
  REQUIRE(loader.next(batch));
  const Tensor before = predict(model, batch.x);
  const StepResult first = train_step(model, sgd, batch);
  double mse = 0;  // the loss the first step saw, by hand
  for (int64_t i = 0; i < 64; ++i) mse += std::pow(before.data()[i] - batch.targets.data()[i], 2) / 64;
  CHECK(first.loss == Approx(mse).epsilon(1e-5));
  for (int i = 0; i < 20; ++i) train_step(model, sgd, batch);
  const StepResult later = train_step(model, sgd, batch);
  CHECK(later.loss < first.loss / 4);
  CHECK(first.correct == 0);
  CHECK(first.abs_error > later.abs_error);
  CHECK_THROWS_WITH(categorical_forward(model, batch), Catch::Contains("categorical cross-entropy needs one-hot targets"));
}

TEST_CASE("a forward of one's own on a model that ends in logits still validates as a classifier", "[train]") {
  const DatasetSplits& data = synthetic();
  ModelConfig config;
  config.description = "dense:10";
  config.input_shape = {784};
  config.classes = 0;  // logits: no softmax, so the builder's classifier check is off
  auto model = build_model(config);
  Adam adam(model->named_parameters(true));
  DataLoader loader(data.train, {.batch_size = 64, .seed = 2});
  TrainerOptions options{.epochs = 3, .validation = &data.test};
  options.forward = [](Module& m, const Batch& b) -> ForwardResult {
    const Tensor logits = m.forward(b.x);
    return {sparse_softmax_cross_entropy(logits, b.labels), logits};
  };
  Trainer trainer(*model, adam, loader, options);
  CHECK(*trainer.options().loss == Loss::categorical_crossentropy);
  const EpochLogs logs = trainer.fit().back();
  CHECK(logs.has_validation);
  CHECK(logs.val_accuracy > 0.5);  // the argmax of the logits, as of probabilities
}
