// `minidl gradcheck`: the finite-difference check over the whole model in training mode (normalisation
// included), on one batch of the training data; non-zero exit when any parameter is over tolerance.
#include <cstdio>

#include "cli.h"
#include "minidl/gradcheck.h"
#include "minidl/losses.h"

namespace minidl::cli {

int gradcheck_command(int argc, char** argv) {
  cxxopts::Options options("minidl gradcheck", "Check the whole model's gradients by finite differences");
  options.add_options()("norm", "normalisation: running, batchwise, manual, none",
                        cxxopts::value<std::string>()->default_value("running"))(
      "batch-size", "samples in the checked batch", cxxopts::value<int64_t>()->default_value("16"))(
      "hidden", "hidden units", cxxopts::value<int64_t>()->default_value("64"))(
      "tolerance", "largest accepted relative error", cxxopts::value<double>()->default_value("0.01"));
  add_common_flags(options);
  const auto f = parse_flags(options, argc, argv, "minidl gradcheck --norm manual");
  apply_threads(f);
  TrainConfig config;
  config.mode = parse_norm_mode(f["norm"].as<std::string>());
  config.hidden = f["hidden"].as<int64_t>();
  config.batch_size = f["batch-size"].as<int64_t>();
  config.seed = f["seed"].as<uint64_t>();
  config.shuffle = false;
  if (config.batch_size < 2) fail("--batch-size must be >= 2 (normalisation needs two samples), got ", config.batch_size);
  const DatasetSplits data = load_data(f["data"].as<std::string>());
  TrainingSession session(config, data.train);
  Sequential& model = session.model();

  DataLoader loader(data.train, {.batch_size = config.batch_size, .shuffle = false}, true);
  Batch batch;
  loader.start_epoch();
  loader.next(batch);
  const NamedTensors params = model.named_parameters();
  std::vector<Tensor> inputs;
  for (const auto& [name, t] : params) inputs.push_back(t);
  GradcheckOptions check;
  check.tolerance = f["tolerance"].as<double>();
  model.train();
  const GradcheckResult r = gradcheck(
      [&](const std::vector<Tensor>&) { return categorical_crossentropy(batch.one_hot, model.forward(batch.x)); },
      inputs, check);

  std::printf("gradcheck of mode %s, batch %lld, in training mode (relative error: |autodiff - numeric| / "
              "max(|autodiff|, |numeric|, %g))\n",
              to_string(config.mode).c_str(), static_cast<long long>(config.batch_size), check.floor);
  for (size_t i = 0; i < params.size(); ++i)
    std::printf("  %-36s %-10s max relative error %.3e%s\n", params[i].first.c_str(),
                params[i].second.shape().str().c_str(), r.max_relative_error[i],
                r.skipped[i] ? (" (" + std::to_string(r.skipped[i]) + " skipped: a step crossed a relu kink)").c_str()
                             : "");
  std::printf("worst %.3e, tolerance %.1e: %s\n", r.worst, check.tolerance, r.ok ? "ok" : "FAILED");
  return r.ok ? 0 : 1;
}

}  // namespace minidl::cli
