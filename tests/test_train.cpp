// Tests of training: each of the document's three modes learns a synthetic MNIST-like set, the same seed
// repeats the same losses bit for bit, evaluate/predict run in inference mode without a graph.
#include "helpers.h"
#include "minidl/nn.h"
#include "minidl/train.h"

using namespace minidl;

namespace {
const DatasetSplits& synthetic() {
  static const DatasetSplits data = make_synthetic(1500, 300, 11);
  return data;
}

// Trains the document's model in `mode` for `epochs`, as the examples do: fit for running statistics,
// a hand-written loop (train_step) for the other modes. Returns the loss after each step.
std::vector<double> train(NormMode mode, int epochs, Module** out_model = nullptr) {
  static std::shared_ptr<Sequential> keep;
  clear_session();
  Generator gen(7);
  keep = make_document_model(mode, {}, gen);
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
  for (NormMode mode : {NormMode::running, NormMode::batchwise, NormMode::manual, NormMode::none}) {
    INFO("mode " << to_string(mode));
    clear_session();
    Generator gen(7);
    const auto model = make_document_model(mode, {}, gen);
    Adam adam(model->parameters());
    const auto history = fit(*model, adam, synthetic().train, {.epochs = 3, .seed = 5});
    REQUIRE(history.size() == 3);
    CHECK(history[0].steps == 47);  // ceil(1500 / 32): the partial last batch is kept
    CHECK(history.back().accuracy >= 0.95);
    CHECK(history.back().loss < history.front().loss);
    const Evaluation test = evaluate(*model, synthetic().test, mode == NormMode::manual ? 100 : 32);
    CHECK(test.accuracy >= 0.9);
  }
}

TEST_CASE("the same seed gives the identical loss sequence", "[train]") {
  for (NormMode mode : {NormMode::running, NormMode::manual}) {
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
  clear_session();
  Generator gen(7);
  const auto model = make_document_model(NormMode::running, {}, gen);
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
  clear_session();
  Generator gen(7);
  const auto model = make_document_model(NormMode::running, {}, gen);
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

TEST_CASE("the normalisation mode parses with a clear error", "[train]") {
  CHECK(parse_norm_mode("batchwise") == NormMode::batchwise);
  CHECK_THROWS_WITH(parse_norm_mode("fast"), "unknown normalisation mode 'fast': choose one of running, batchwise, "
                                              "manual, none");
}
