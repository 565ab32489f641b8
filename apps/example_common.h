// What the three example programs share: their flags, the per-epoch line, and main's error handling.
#pragma once

#include <cxxopts.hpp>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <functional>
#include <string>

#include "minidl/callbacks.h"
#include "minidl/data.h"
#include "minidl/error.h"

namespace minidl::examples {

struct Args {
  int epochs = 5;
  std::string data_dir;
  uint64_t seed = 1;
  int64_t eval_batch_size = 32;
};

/// Parses --epochs, --data, --seed (and --eval-batch-size when asked); prints help and exits on --help.
inline Args parse_args(int argc, char** argv, const char* name, const char* description, bool eval_batch_size) {
  cxxopts::Options options(name, description);
  options.add_options()("epochs", "epochs to train", cxxopts::value<int>()->default_value("5"))(
      "data", "directory with the MNIST-format files", cxxopts::value<std::string>()->default_value(default_data_dir()))(
      "seed", "seed for initial weights and shuffling", cxxopts::value<uint64_t>()->default_value("1"))(
      "h,help", "show this help");
  if (eval_batch_size)
    options.add_options()("eval-batch-size", "evaluation batch size (each batch is normalised with its own statistics)",
                          cxxopts::value<int64_t>()->default_value("32"));
  const auto result = options.parse(argc, argv);
  if (result.count("help")) {
    std::printf("%s\nExample: %s --epochs 1\n", options.help().c_str(), name);
    std::exit(0);
  }
  if (!result.unmatched().empty()) fail("unexpected argument '", result.unmatched()[0], "' (see --help)");
  Args args{result["epochs"].as<int>(), result["data"].as<std::string>(), result["seed"].as<uint64_t>(), 32};
  if (eval_batch_size) args.eval_batch_size = result["eval-batch-size"].as<int64_t>();
  if (args.epochs < 1) fail("--epochs must be >= 1, got ", args.epochs);
  if (args.eval_batch_size < 1) fail("--eval-batch-size must be >= 1, got ", args.eval_batch_size);
  return args;
}

inline void print_epoch(int epoch, int epochs, double loss, double accuracy, double test_accuracy, double seconds) {
  std::printf("epoch %d/%d  loss %.4f  accuracy %.4f  test_accuracy %.4f  (%.2f s)\n", epoch, epochs, loss, accuracy,
              test_accuracy, seconds);
  std::fflush(stdout);
}

/// A Trainer callback printing that line after every epoch (the test set being the Trainer's validation data).
inline std::shared_ptr<Callback> epoch_printer() {
  auto printer = std::make_shared<LambdaCallback>();
  printer->epoch_end = [](Trainer& trainer, const EpochLogs& e) {
    print_epoch(e.epoch, trainer.options().epochs, e.loss, e.accuracy, e.val_accuracy, e.seconds);
  };
  return printer;
}

/// Runs body; a minidl::Error or bad flag is logged and turns into exit status 1.
inline int run(const std::function<void()>& body) {
  try {
    body();
    return 0;
  } catch (const cxxopts::exceptions::exception& e) {
    spdlog::error("{} (see --help)", e.what());
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
  }
  return 1;
}

}  // namespace minidl::examples
