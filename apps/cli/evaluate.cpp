// `minidl evaluate`: test loss and accuracy (or, for float targets, MAE, RMSE and R²) of a saved model, in
// inference mode (manual mode: each evaluated batch normalised with its own statistics, at the given batch
// size), on the data the checkpoint records or a new file read as its training data was.
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <cmath>
#include <cstdio>

#include "cli.h"

namespace minidl::cli {

int evaluate_command(int argc, char** argv) {
  cxxopts::Options options("minidl evaluate", "Test loss and accuracy of a model saved by `minidl train --save`");
  options.add_options()("model", "the checkpoint (safetensors)", cxxopts::value<std::string>())(
      "batch-size", "evaluation batch size", cxxopts::value<int64_t>()->default_value(std::to_string(kDefaultBatchSize)))(
      "batch-statistics", "normalise each batch with its own statistics instead of the moving ones")(
      "json", "print {\"loss\": ..., \"accuracy\": ...} (for float targets: loss, mae, rmse, r2)");
  add_common_flags(options);
  const auto f = parse_flags(options, argc, argv, "minidl evaluate --model model.safetensors --batch-size 1000");
  apply_threads(f);
  if (!f.count("model")) fail("--model FILE is required (a checkpoint written by `minidl train --save`)");
  const int64_t batch_size = f["batch-size"].as<int64_t>();
  if (batch_size < 1) fail("--batch-size must be >= 1, got ", batch_size);

  const std::string path = f["model"].as<std::string>();
  const LoadedModel loaded = load_model(path);
  refuse_non_finite(loaded.checkpoint, path);
  const DatasetSplits data = load_for_model(data_spec_for(f, loaded.checkpoint.metadata, path, true), loaded.config);
  check_data_fits(loaded.config, data.test, "in '" + path + "'");
  const bool batch_statistics = f["batch-statistics"].as<bool>();
  check_evaluation(*loaded.model, data.test, batch_size, batch_statistics, "--batch-size");
  // The loss the run reported as its test loss (label smoothing included).
  const RunConfig trained = RunConfig::from_metadata(MetadataReader(loaded.checkpoint.metadata, "checkpoint '" + path + "'"));
  const Evaluation e = evaluate(*loaded.model, data.test, batch_size, batch_statistics, trained.loss, nullptr,
                                trained.label_smoothing);
  if (!std::isfinite(e.loss)) {  // find the sample (and the layer) rather than print NaN as the result
    const Tensor x = data.test.to_tensor();
    const BatchStatisticsGuard statistics(*loaded.model, batch_statistics);
    if (!outputs_finite(*loaded.model, x, predict(*loaded.model, x, batch_size))) return 3;
    spdlog::error("every output is finite but the test loss is {}: the loss itself overflowed; no result is reported", e.loss);
    return 3;
  }
  // The metrics the data has: accuracy (and a sigmoid output's AUC) for classes, MAE, RMSE and R² for values.
  nlohmann::ordered_json metrics = {{"loss", e.loss}};
  if (e.regression) {
    metrics["mae"] = e.mae, metrics["rmse"] = e.rmse, metrics["r2"] = e.r2;
  } else {
    metrics["accuracy"] = e.accuracy;
    if (trained.loss == Loss::binary_crossentropy) metrics["auc"] = e.auc;
  }
  if (f["json"].as<bool>()) {
    std::printf("%s\n", metrics.dump().c_str());
    return 0;
  }
  std::string text;
  for (const auto& [key, value] : metrics.items())
    text += fmt::format("  test_{} {:.4f}", key, value.is_null() ? NAN : value.get<double>());
  std::printf("%s (norm %s)%s  (batch size %lld)\n", loaded.config.description.c_str(), loaded.config.norm.c_str(),
              text.c_str(), static_cast<long long>(batch_size));
  return 0;
}

}  // namespace minidl::cli
