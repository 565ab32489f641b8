// `minidl evaluate`: test loss and accuracy of a saved model, in inference mode (manual mode: each evaluated
// batch normalised with its own statistics, at the given batch size), on the data the checkpoint records.
#include <nlohmann/json.hpp>

#include <cstdio>

#include "cli.h"

namespace minidl::cli {

int evaluate_command(int argc, char** argv) {
  cxxopts::Options options("minidl evaluate", "Test loss and accuracy of a model saved by `minidl train --save`");
  options.add_options()("model", "the checkpoint (safetensors)", cxxopts::value<std::string>())(
      "batch-size", "evaluation batch size", cxxopts::value<int64_t>()->default_value(std::to_string(kDefaultBatchSize)))(
      "batch-statistics", "normalise each batch with its own statistics instead of the moving ones")(
      "json", "print {\"loss\": ..., \"accuracy\": ...}");
  add_common_flags(options);
  const auto f = parse_flags(options, argc, argv, "minidl evaluate --model model.safetensors --batch-size 1000");
  apply_threads(f);
  if (!f.count("model")) fail("--model FILE is required (a checkpoint written by `minidl train --save`)");
  const int64_t batch_size = f["batch-size"].as<int64_t>();
  if (batch_size < 1) fail("--batch-size must be >= 1, got ", batch_size);

  const std::string path = f["model"].as<std::string>();
  const LoadedModel loaded = load_model(path);
  refuse_non_finite(loaded.checkpoint, path);
  const DatasetSplits data = load_logged(data_spec_for(f, loaded.checkpoint.metadata, path, true));
  check_data_fits(loaded.config, data.test, "in '" + path + "'");
  const bool batch_statistics = f["batch-statistics"].as<bool>();
  check_evaluation(*loaded.model, data.test, batch_size, batch_statistics, "--batch-size");
  const Evaluation e = evaluate(*loaded.model, data.test, batch_size, batch_statistics);
  if (f["json"].as<bool>())
    std::printf("%s\n", nlohmann::ordered_json{{"loss", e.loss}, {"accuracy", e.accuracy}}.dump().c_str());
  else
    std::printf("%s (norm %s)  test_loss %.4f  test_accuracy %.4f  (batch size %lld)\n",
                loaded.config.description.c_str(), loaded.config.norm.c_str(), e.loss, e.accuracy,
                static_cast<long long>(batch_size));
  return 0;
}

}  // namespace minidl::cli
