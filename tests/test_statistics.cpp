// Population statistics of BatchNormalization inputs and PreciseBN recalibration (minidl/statistics.h).
#include <nlohmann/json.hpp>

#include <cmath>

#include "cli_helpers.h"
#include "minidl/checkpoint.h"
#include "minidl/data.h"
#include "minidl/models.h"
#include "minidl/statistics.h"
#include "minidl/train.h"

using namespace minidl;
using minidl::test::data_flag;
using minidl::test::minidl_cli;
using minidl::test::read_bytes;
using minidl::test::Run;
using minidl::test::TempDir;

namespace {
// A model with two BatchNormalization layers, trained a few steps so that its moving statistics are stale.
std::shared_ptr<Sequential> trained_model(const Dataset& data, const std::string& norm = "running") {
  ModelConfig config;
  config.description = "dense:16,relu,bn,dense:8,relu,bn,dense:10,softmax";
  config.norm = norm;
  auto model = build_model(config);
  Adam adam(model->named_parameters(true), {.learning_rate = 0.01f});
  DataLoader loader(data, {.batch_size = 32, .seed = 3}, true);
  Trainer trainer(*model, adam, loader, {.epochs = 1, .max_steps = 15});
  trainer.fit();
  return model;
}
}  // namespace

TEST_CASE("recalibration installs each layer's exact population statistics, layer by layer", "[statistics]") {
  const DatasetSplits data = make_synthetic(640, 10, 5);
  auto model = trained_model(data.train);
  auto& bn = dynamic_cast<BatchNormalization&>(*model->children()[2]);
  const Recalibration r = recalibrate_batch_norm(*model, data.train, 0);
  CHECK(r.layers == 2);
  CHECK(r.samples == 640);
  CHECK(r.change.mean > 0.01);  // 15 steps of momentum 0.99 leave the moving statistics far from the data's

  // The first layer's statistics, computed here from the formula: the mean and biased variance over all 640
  // samples of relu(x W + b), in double.
  const NoGradGuard no_grad;
  auto& dense = dynamic_cast<Dense&>(*model->children()[0]);
  const Tensor h = relu(add(matmul(data.train.to_tensor(), dense.kernel()), dense.bias()));
  for (int64_t k = 0; k < 16; ++k) {
    double sum = 0, squares = 0;
    for (int64_t i = 0; i < 640; ++i) sum += h.at({i, k});
    const double mean = sum / 640;
    for (int64_t i = 0; i < 640; ++i) squares += (h.at({i, k}) - mean) * (h.at({i, k}) - mean);
    INFO("channel " << k);
    CHECK(bn.moving_mean().data()[k] == Approx(mean).margin(1e-6));
    CHECK(bn.moving_variance().data()[k] == Approx(squares / 640).epsilon(1e-5).margin(1e-7));
  }
  // Layer by layer: the second layer's statistics were taken with the first already recalibrated, so the
  // population statistics of the recalibrated model are its moving statistics, in every layer.
  const StatisticsGap after = moving_statistics_gap(*model, population_statistics(*model, data.train));
  CHECK(after.mean < 1e-5);
  CHECK(after.variance < 1e-5);
  // The weights were not touched: recalibrating again changes nothing.
  CHECK(recalibrate_batch_norm(*model, data.train, 0).change.mean < 1e-5);
}

TEST_CASE("recalibration from a sample: seeded, without replacement, and close to the population", "[statistics]") {
  const DatasetSplits data = make_synthetic(2000, 10, 6);
  auto a = trained_model(data.train);
  auto b = trained_model(data.train);
  recalibrate_batch_norm(*a, data.train, 500, 7);
  recalibrate_batch_norm(*b, data.train, 500, 7);
  const NamedTensors sa = a->state(), sb = b->state();
  REQUIRE(sa.size() == sb.size());
  for (size_t i = 0; i < sa.size(); ++i) {
    INFO(sa[i].first);
    CHECK(sa[i].second.to_vector() == sb[i].second.to_vector());  // the same seed, the same rows, the same bytes
  }
  // A sample estimates the population's statistics; a larger one, better, and either far better than the
  // moving averages of 15 steps.
  auto stale = trained_model(data.train);
  const StatisticsGap before = moving_statistics_gap(*stale, population_statistics(*stale, data.train));
  const StatisticsGap gap = moving_statistics_gap(*a, population_statistics(*a, data.train));
  recalibrate_batch_norm(*b, data.train, 1500, 7);
  const StatisticsGap larger = moving_statistics_gap(*b, population_statistics(*b, data.train));
  INFO("gap before " << before.mean << " " << before.variance << ", 500 samples " << gap.mean << " " << gap.variance
                     << ", 1500 samples " << larger.mean << " " << larger.variance);
  CHECK(gap.mean < before.mean / 3);
  CHECK(gap.variance < before.variance / 3);
  CHECK(larger.mean < gap.mean);
  CHECK(larger.variance < gap.variance);
  CHECK(larger.variance < 0.05);
  // More samples than the data holds: all of it.
  CHECK(recalibrate_batch_norm(*a, data.train, 1 << 20).samples == 2000);
}

TEST_CASE("recalibration refuses a model without moving statistics, naming why", "[statistics]") {
  const DatasetSplits data = make_synthetic(64, 10, 7);
  auto model = trained_model(data.train, "manual");
  CHECK_THROWS_WITH(recalibrate_batch_norm(*model, data.train, 0),
                    Catch::Contains("no BatchNormalization layer with moving statistics") &&
                        Catch::Contains("manual mode"));
}

TEST_CASE("minidl recalibrate and train --recalibrate: statistics re-estimated, everything else kept", "[statistics][cli]") {
  TempDir dir;
  const std::string model = dir.file("model"), recalibrated = dir.file("recalibrated");
  REQUIRE(minidl_cli("train --epochs 1 --save " + model + " " + data_flag(), dir).status == 0);
  const Run r = minidl_cli("recalibrate --model " + model + " --out " + recalibrated + " --samples 0 --json", dir);
  INFO(r.err);
  REQUIRE(r.status == 0);
  const auto json = nlohmann::json::parse(r.out);
  CHECK(json["layers"] == 1);
  CHECK(json["samples"] == 640);  // 0: all the training data
  CHECK(json["mean_change"].get<double>() > 0.01);
  // The file holds the library's recalibration of the same model, and everything else as it was.
  const Checkpoint before = load_safetensors(model), after = load_safetensors(recalibrated);
  LoadedModel expected = load_model(model);
  recalibrate_batch_norm(*expected.model, load_mnist_dir(test::data_dir().path()).train, 0);
  std::map<std::string, Tensor> expected_state;
  for (const auto& [name, t] : expected.model->state()) expected_state[name] = t;
  for (const auto& [name, t] : before.tensors) {
    INFO(name);
    const bool statistic = name.find("moving_") != std::string::npos;
    if (statistic)
      CHECK(after.tensors.at(name).to_vector() == expected_state.at(name).to_vector());
    else
      CHECK(after.tensors.at(name).to_vector() == t.to_vector());
  }
  CHECK(after.metadata.at("model.recalibrated_samples") == "640");
  CHECK(after.metadata.at("trainer.step") == before.metadata.at("trainer.step"));
  const Run evaluated = minidl_cli("evaluate --json --model " + recalibrated, dir);
  REQUIRE(evaluated.status == 0);
  CHECK(nlohmann::json::parse(evaluated.out)["accuracy"] == json["test_accuracy_after"]);
  CHECK(minidl_cli("train --resume " + recalibrated + " --epochs 2", dir).status == 0);  // still resumes

  // train --recalibrate: the same statistics, written by the final save.
  const std::string trained = dir.file("trained");
  const Run t = minidl_cli("train --epochs 1 --recalibrate 0 --save " + trained + " " + data_flag(), dir);
  REQUIRE(t.status == 0);
  CHECK_THAT(t.err, Catch::Contains("recalibrated 1 BatchNormalization layer from 640 training samples"));
  for (const char* name : {"batch_normalization/moving_mean", "batch_normalization/moving_variance"})
    CHECK(load_safetensors(trained).tensors.at(name).to_vector() == after.tensors.at(name).to_vector());

  // Without it, train says when the moving statistics lag (20 steps of momentum 0.99 leave them far behind),
  // and how to fix it; a model without moving statistics gets no such word.
  const Run plain = minidl_cli("train --epochs 1 --lr 0.01 " + data_flag(), dir);
  REQUIRE(plain.status == 0);
  CHECK_THAT(plain.err, Catch::Contains("the moving statistics lag the weights") &&
                            Catch::Contains("then minidl recalibrate --model FILE --out FILE"));
  CHECK_THAT(minidl_cli("train --epochs 1 --norm manual " + data_flag(), dir).err,
             !Catch::Contains("moving statistics lag"));

  // Bad input: a clear error, nothing written.
  const std::string manual = dir.file("manual");
  REQUIRE(minidl_cli("train --norm manual --steps 2 --save " + manual + " " + data_flag(), dir).status == 0);
  const Run refused = minidl_cli("recalibrate --model " + manual + " --out " + dir.file("x"), dir);
  CHECK(refused.status != 0);
  CHECK_THAT(refused.err, Catch::Contains("manual mode normalises every batch with its own statistics"));
  CHECK_FALSE(std::filesystem::exists(dir.file("x")));
  CHECK_THAT(minidl_cli("recalibrate --model " + model, dir).err, Catch::Contains("--out FILE is required"));
  // train --recalibrate on a model without moving statistics is refused before the first step.
  const Run early = minidl_cli("train --norm manual --recalibrate 100 --json " + data_flag(), dir);
  CHECK(early.status != 0);
  CHECK(early.out.empty());  // no epoch ran
  CHECK_THAT(early.err, Catch::Contains("--recalibrate: the model 'dense:64,relu,bn,dense:10,softmax' in norm mode "
                                        "manual keeps no moving statistics"));
  CHECK_THAT(minidl_cli("recalibrate --model " + model + " --out " + dir.file("x") + " --samples -1", dir).err,
             Catch::Contains("--samples must be >= 0"));
}

