// `minidl train`: flags → config → session → epochs, with per-epoch test evaluation, logs and checkpoints.
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <cstdio>

#include "cli.h"
#include "minidl/atomic_file.h"

namespace minidl::cli {
namespace {
TrainConfig config_from_flags(const cxxopts::ParseResult& f) {
  TrainConfig c;
  c.mode = parse_norm_mode(f["norm"].as<std::string>());
  c.epochs = f["epochs"].as<int>();
  c.batch_size = f["batch-size"].as<int64_t>();
  c.learning_rate = f["lr"].as<float>();
  c.hidden = f["hidden"].as<int64_t>();
  if (f.count("momentum")) c.momentum = f["momentum"].as<float>();
  c.epsilon = f["epsilon"].as<float>();
  c.seed = f["seed"].as<uint64_t>();
  c.shuffle = !f["no-shuffle"].as<bool>();
  c.max_steps = f["steps"].as<int64_t>();
  c.eval_batch_size = f["eval-batch-size"].as<int64_t>();
  if (c.batch_size < 1) fail("--batch-size must be >= 1, got ", c.batch_size);
  if (c.eval_batch_size < 1) fail("--eval-batch-size must be >= 1, got ", c.eval_batch_size);
  if (c.max_steps < -1) fail("--steps must be >= 0, got ", c.max_steps);
  if (c.epochs < 1) fail("--epochs must be >= 1, got ", c.epochs);
  return c;
}

// With --resume the checkpoint's configuration wins; only how long to train comes from the flags, and a flag
// that contradicts the checkpoint is an error rather than silently ignored.
TrainConfig resumed_config(const cxxopts::ParseResult& f, const Checkpoint& checkpoint, const std::string& path) {
  TrainConfig c = TrainConfig::from_metadata(checkpoint.metadata, path);
  if (f.count("norm") && parse_norm_mode(f["norm"].as<std::string>()) != c.mode)
    fail("--norm ", f["norm"].as<std::string>(), " contradicts the checkpoint '", path, "' (mode ", to_string(c.mode),
         "); drop --norm when resuming");
  for (const char* flag : {"hidden", "batch-size", "lr", "momentum", "epsilon", "seed", "no-shuffle"})
    if (f.count(flag)) fail("--", flag, " cannot change when resuming: the checkpoint '", path, "' fixes it");
  if (f.count("epochs")) c.epochs = f["epochs"].as<int>();
  c.max_steps = f["steps"].as<int64_t>();
  if (f.count("eval-batch-size")) c.eval_batch_size = f["eval-batch-size"].as<int64_t>();
  return c;
}

nlohmann::ordered_json epoch_json(const EpochLogs& e, const Evaluation& test, int64_t step) {
  return {{"epoch", e.epoch},       {"steps", e.steps},         {"step", step},
          {"loss", e.loss},         {"accuracy", e.accuracy},   {"test_loss", test.loss},
          {"test_accuracy", test.accuracy}, {"seconds", e.seconds}};
}
}  // namespace

int train_command(int argc, char** argv) {
  cxxopts::Options options("minidl train", "Train the document's model on MNIST-format data");
  options.add_options()("norm", "normalisation: running, batchwise, manual, none",
                        cxxopts::value<std::string>()->default_value("running"))(
      "epochs", "epochs in all", cxxopts::value<int>()->default_value("5"))(
      "batch-size", "training batch size", cxxopts::value<int64_t>()->default_value("32"))(
      "lr", "Adam learning rate", cxxopts::value<float>()->default_value("0.001"))(
      "hidden", "hidden units", cxxopts::value<int64_t>()->default_value("64"))(
      "momentum", "BatchNormalization momentum, Keras convention (default 0.99; batchwise: 0)", cxxopts::value<float>())(
      "epsilon", "normalisation epsilon", cxxopts::value<float>()->default_value("0.001"))(
      "steps", "stop after this many optimizer steps in all", cxxopts::value<int64_t>()->default_value("-1"))(
      "no-shuffle", "keep file order instead of a fresh permutation each epoch")(
      "eval-batch-size", "test evaluation batch size (manual mode normalises each batch by itself)",
      cxxopts::value<int64_t>()->default_value("32"))(
      "save", "write the checkpoint (safetensors) here after every epoch", cxxopts::value<std::string>())(
      "init", "start from the weights in this safetensors file", cxxopts::value<std::string>())(
      "resume", "continue exactly from a checkpoint written by --save", cxxopts::value<std::string>())(
      "log", "write one JSON object per epoch to this file", cxxopts::value<std::string>())(
      "json", "print one JSON object per epoch on stdout");
  add_common_flags(options);
  const auto f = parse_flags(options, argc, argv, "minidl train --norm batchwise --epochs 3 --save model.safetensors");
  apply_threads(f);
  if (f.count("init") && f.count("resume")) fail("--init and --resume exclude each other: resume already has weights");

  std::optional<Checkpoint> checkpoint;
  std::string checkpoint_path;
  if (f.count("resume") || f.count("init")) {
    checkpoint_path = f[f.count("resume") ? "resume" : "init"].as<std::string>();
    checkpoint = load_safetensors(checkpoint_path);
  }
  const TrainConfig config = f.count("resume") ? resumed_config(f, *checkpoint, checkpoint_path) : config_from_flags(f);
  const DatasetSplits data = load_data(f["data"].as<std::string>());
  TrainingSession session(config, data.train);
  if (f.count("resume")) session.resume(*checkpoint, checkpoint_path);
  if (f.count("init")) session.init_weights(*checkpoint, checkpoint_path);

  const bool json = f["json"].as<bool>();
  std::string log_text;
  spdlog::info("training mode {} for {} epochs{}", to_string(config.mode), config.epochs,
               config.max_steps >= 0 ? " (at most " + std::to_string(config.max_steps) + " steps)" : "");
  while (!session.finished()) {
    Progress progress("epoch " + std::to_string(session.epoch() + 1) + "/" + std::to_string(config.epochs));
    const EpochLogs e = session.run_epoch([&](int64_t done, int64_t total, double loss, double accuracy) {
      progress.update(done, total, loss, accuracy);
    });
    progress.finish();
    const Evaluation test = evaluate(session.model(), data.test, config.eval_batch_size);
    const auto record = epoch_json(e, test, session.step());
    if (json)
      std::printf("%s\n", record.dump().c_str());
    else
      std::printf("epoch %d/%d  loss %.4f  accuracy %.4f  test_loss %.4f  test_accuracy %.4f  (%.2f s, %lld steps)\n",
                  e.epoch, config.epochs, e.loss, e.accuracy, test.loss, test.accuracy, e.seconds,
                  static_cast<long long>(e.steps));
    std::fflush(stdout);
    if (f.count("log")) {
      log_text += record.dump() + "\n";
      write_text_atomically(f["log"].as<std::string>(), log_text);
    }
    if (f.count("save")) session.save(f["save"].as<std::string>());
  }
  if (f.count("save")) spdlog::info("saved {} (step {})", f["save"].as<std::string>(), session.step());
  return 0;
}

}  // namespace minidl::cli
