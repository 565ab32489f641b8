// `minidl gradcheck`: the finite-difference check over a whole model in training mode (normalisation
// included), on one batch of the training data; non-zero exit when any parameter is over tolerance.
#include <cstdio>

#include "cli.h"
#include "minidl/gradcheck.h"

namespace minidl::cli {

int gradcheck_command(int argc, char** argv) {
  cxxopts::Options options("minidl gradcheck", "Check the whole model's gradients by finite differences");
  options.add_options()("batch-size", "samples in the checked batch", cxxopts::value<int64_t>()->default_value("16"))(
      "tolerance", "largest accepted relative error", cxxopts::value<double>()->default_value("0.01"))(
      "max-elements", "check at most this many elements of each parameter, sampled (0: all)",
      cxxopts::value<int64_t>()->default_value("1000"));
  add_model_flags(options);
  add_common_flags(options);
  const auto f = parse_flags(options, argc, argv, "minidl gradcheck --model dense:32,relu,bn,dense:10,softmax --norm manual");
  apply_threads(f);
  const int64_t batch_size = f["batch-size"].as<int64_t>();
  if (batch_size < 1) fail("--batch-size must be >= 1, got ", batch_size);
  const DatasetSplits data = load_logged(data_spec_from_flags(f));
  const ModelConfig config = model_config_from_flags(f, data.train);
  const auto model = build_model(config);
  const int64_t needed = model->min_training_batch({1, data.train.features()});
  if (batch_size < needed) fail("--batch-size must be >= ", needed, " (normalisation needs two samples), got ", batch_size);
  // Dropout draws a new mask at every forward: each evaluation restarts its generators, so all see one mask.
  std::vector<std::pair<Generator*, std::array<uint64_t, 4>>> generators;
  for (const auto& [name, generator] : model->named_generators()) generators.emplace_back(generator, generator->state());

  DataLoader loader(data.train, {.batch_size = batch_size, .shuffle = false}, true);
  Batch batch;
  loader.start_epoch();
  loader.next(batch);
  const NamedTensors params = model->named_parameters();
  std::vector<Tensor> inputs;
  for (const auto& [name, t] : params) inputs.push_back(t);
  GradcheckOptions check;
  check.tolerance = f["tolerance"].as<double>();
  check.max_elements = f["max-elements"].as<int64_t>();
  if (check.max_elements < 0) fail("--max-elements must be >= 0, got ", check.max_elements);
  model->train();
  const GradcheckResult r =
      gradcheck([&](const std::vector<Tensor>&) {
        for (auto& [generator, state] : generators) generator->set_state(state);
        return categorical_forward(*model, batch).loss;
      }, inputs, check);

  std::printf("gradcheck of %s (norm %s), batch %lld, in training mode (relative error: |autodiff - numeric| / "
              "max(|autodiff|, |numeric|, %g))\n",
              config.description.c_str(), config.norm.c_str(), static_cast<long long>(batch_size), check.floor);
  for (size_t i = 0; i < params.size(); ++i)
    std::printf("  %-36s %-14s %6lld of %7lld elements, max relative error %.3e\n", params[i].first.c_str(),
                params[i].second.shape().str().c_str(), static_cast<long long>(r.checked[i]),
                static_cast<long long>(params[i].second.numel()), r.max_relative_error[i]);
  std::printf("worst %.3e, tolerance %.1e: %s\n", r.worst, check.tolerance, r.ok ? "ok" : "FAILED");
  return r.ok ? 0 : 1;
}

}  // namespace minidl::cli
