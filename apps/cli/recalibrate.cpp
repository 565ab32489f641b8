// `minidl recalibrate`: PreciseBN — a saved model's BatchNormalization moving statistics replaced by the exact
// population statistics of N training samples (recalibrate_batch_norm), test accuracy (or R²) before and after.
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <cstdio>

#include "cli.h"
#include "settings.h"
#include "minidl/atomic_file.h"
#include "minidl/statistics.h"

namespace minidl::cli {

RecalibrationReport recalibrate_and_report(Sequential& model, const DatasetSplits& data, int64_t samples, uint64_t seed,
                                           int64_t eval_batch_size) {
  RecalibrationReport report;
  const Evaluation before = evaluate(model, data.test, eval_batch_size, false);
  report.before = before.score();
  report.recalibration = recalibrate_batch_norm(model, data.train, samples, seed);
  report.after = evaluate(model, data.test, eval_batch_size, false).score();
  spdlog::info("recalibrated {} BatchNormalization layer{} from {} training samples: moving means moved {:.1f} %, "
               "variances {:.1f} %; test {} {:.4f} -> {:.4f}",
               report.recalibration.layers, report.recalibration.layers == 1 ? "" : "s", report.recalibration.samples,
               100 * report.recalibration.change.mean, 100 * report.recalibration.change.variance, before.score_name(),
               report.before, report.after);
  return report;
}

void warn_if_moving_statistics_lag(Sequential& model, const Dataset& test, int64_t batch_size, double moving_accuracy,
                                   const std::string& saved) {
  constexpr double kLag = 0.01;
  if (!has_moving_statistics(model)) return;
  try {
    check_evaluation(model, test, batch_size, true);
  } catch (const Error&) {
    return;  // a batch of one sample cannot be normalised with its own statistics: nothing to compare
  }
  const Evaluation e = evaluate(model, test, batch_size, true);
  const double batch = e.score();
  if (batch - moving_accuracy > kLag)
    spdlog::warn("the moving statistics lag the weights: test {} {:.4f} with them, {:.4f} normalising each "
                 "batch of {} with its own statistics. Re-estimate them: {} (or train with --recalibrate 4096)",
                 e.score_name(), moving_accuracy, batch, batch_size,
                 saved.empty() ? "save with --save FILE, then minidl recalibrate --model FILE --out FILE"
                               : "minidl recalibrate --model " + saved + " --out " + saved);
}

int recalibrate_command(int argc, char** argv) {
  cxxopts::Options options("minidl recalibrate",
                           "Re-estimate a saved model's BatchNormalization moving statistics from training data "
                           "(PreciseBN): exact population statistics, layer by layer, weights unchanged");
  options.add_options()("model", "the checkpoint (safetensors)", cxxopts::value<std::string>())(
      "out", "where to write the recalibrated checkpoint (may be --model itself)", cxxopts::value<std::string>())(
      "samples", "training samples to compute the statistics from (0: all)",
      cxxopts::value<int64_t>()->default_value("4096"))(
      "eval-batch-size", "batch size of the test evaluations before and after",
      cxxopts::value<int64_t>()->default_value("1000"))("json", "print the result as one JSON line");
  add_common_flags(options);
  const auto f = parse_flags(options, argc, argv,
                             "minidl recalibrate --model model.safetensors --samples 4096 --out recalibrated.safetensors");
  apply_threads(f);
  if (!f.count("model")) fail("--model FILE is required (a checkpoint written by `minidl train --save`)");
  if (!f.count("out")) fail("--out FILE is required: where to write the recalibrated checkpoint");
  const int64_t samples = f["samples"].as<int64_t>();
  if (samples < 0) fail("--samples must be >= 0 (0: all the training data), got ", samples);
  const int64_t eval_batch_size = f["eval-batch-size"].as<int64_t>();
  if (eval_batch_size < 1) fail("--eval-batch-size must be >= 1, got ", eval_batch_size);
  const std::string path = f["model"].as<std::string>(), out = f["out"].as<std::string>();
  check_extension(out, "--out", ".safetensors");
  check_writable(out, "--out");

  LoadedModel loaded = load_model(path);
  refuse_non_finite(loaded.checkpoint, path);
  const DataSpec spec = data_spec_for(f, loaded.checkpoint.metadata, path, true);
  std::vector<NamedPath> inputs = data_files(spec);
  inputs.push_back({"--model", path});
  check_outputs({{"--out", out}}, inputs, {{"--out", "--model"}});  // --out may be --model itself
  const DatasetSplits data = load_logged(spec);
  check_data_fits(loaded.config, data.train, "in '" + path + "'");
  check_data_fits(loaded.config, data.test, "in '" + path + "'");
  const RecalibrationReport r = recalibrate_and_report(*loaded.model, data, samples, setting<uint64_t>(f, "seed"), eval_batch_size);

  // Everything the checkpoint held stays (a training checkpoint still resumes), with the new statistics.
  Checkpoint& c = loaded.checkpoint;
  for (const auto& [name, t] : loaded.model->state()) c.tensors[name] = t;
  c.metadata["model.recalibrated_samples"] = std::to_string(r.recalibration.samples);
  save_safetensors(out, NamedTensors(c.tensors.begin(), c.tensors.end()), c.metadata);
  const char* score = loaded.config.outputs > 0 ? "r2" : "accuracy";
  if (f["json"].as<bool>())
    std::printf("%s\n", nlohmann::ordered_json{{"layers", r.recalibration.layers},
                                               {"samples", r.recalibration.samples},
                                               {"mean_change", r.recalibration.change.mean},
                                               {"variance_change", r.recalibration.change.variance},
                                               {std::string("test_") + score + "_before", r.before},
                                               {std::string("test_") + score + "_after", r.after}}
                            .dump()
                            .c_str());
  spdlog::info("saved {}", out);
  return 0;
}

}  // namespace minidl::cli
