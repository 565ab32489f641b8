// `minidl`: the command line. Dispatches to the commands; errors exit non-zero; library warnings go to the log.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <cstring>

#include "cli.h"
#include "minidl/distributed.h"
#include "minidl/internal/text.h"
#include "minidl/version.h"

namespace {
constexpr const char* kUsage = R"(minidl: a small deep-learning training framework

Usage: minidl <command> [flags]      (minidl <command> --help for its flags; minidl --version)

Commands:
  train        train a model (--model, default the document's: dense:64,relu,bn,dense:10,softmax)
  evaluate     test loss and accuracy of a saved model
  predict      class probabilities of a saved model for images, a CSV, or its test data
  export       a saved model as an ONNX file
  recalibrate  re-estimate a saved model's BatchNormalization statistics from training data (PreciseBN)
  summary      a model's layers, output shapes and parameter counts, as Keras prints them
  compare      a normalisation study: modes × batch sizes × seeds, mean ± sd, CSV, JSON and figures
  gradcheck    finite-difference check of the whole model's gradients
  bench        speed and memory of training steps, beside the machine's GEMM peak (and libtorch)

Examples:
  minidl compare --epochs 5 --out results
  minidl train --model dense:256,relu,bn,dense:128,relu,bn,dense:10,softmax --epochs 3 --save model.safetensors
  minidl evaluate --model model.safetensors
  minidl predict --model model.safetensors --first 5
)";
}  // namespace

int main(int argc, char** argv) {
  minidl::cli::choose_wait_policy(argc, argv);  // may run the command again, before libgomp starts a thread
  spdlog::set_default_logger(spdlog::stderr_color_mt("minidl"));
  spdlog::set_pattern("%^%l%$: %v");
  minidl::set_warning_handler([](const std::string& message) { spdlog::warn("{}", message); });
  if (const std::string note = minidl::cli::wait_policy_note(); !note.empty() && minidl::Communicator::world().rank() == 0)
    spdlog::info("{}", note);  // every command that computes, compare and bench included
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "help")) {
    std::printf("%s", kUsage);
    return argc < 2 ? 1 : 0;
  }
  const std::string command = argv[1];
  if (command == "--version" || command == "version") {
    std::printf("minidl %s\n", minidl::version());
    return 0;
  }
  try {
    if (command == "train") return minidl::cli::train_command(argc - 1, argv + 1);
    if (command == "evaluate") return minidl::cli::evaluate_command(argc - 1, argv + 1);
    if (command == "compare") return minidl::cli::compare_command(argc - 1, argv + 1);
    if (command == "gradcheck") return minidl::cli::gradcheck_command(argc - 1, argv + 1);
    if (command == "bench") return minidl::cli::bench_command(argc - 1, argv + 1);
    if (command == "summary") return minidl::cli::summary_command(argc - 1, argv + 1);
    if (command == "predict") return minidl::cli::predict_command(argc - 1, argv + 1);
    if (command == "export") return minidl::cli::export_command(argc - 1, argv + 1);
    if (command == "recalibrate") return minidl::cli::recalibrate_command(argc - 1, argv + 1);
    const std::vector<std::string> commands{"train", "evaluate", "predict", "export", "recalibrate", "summary",
                                            "compare", "gradcheck", "bench"};
    const std::string close = minidl::cli::closest_word(command, commands);
    spdlog::error("unknown command '{}': {}choose one of {} (minidl --help)", minidl::internal::excerpt(command),
                  close.empty() ? "" : "did you mean " + close + "? ", minidl::internal::join(commands));
  } catch (const std::exception& e) {
    // Under mpirun the other processes would wait for this one in their next collective: end them all, naming
    // this rank.
    if (minidl::Communicator::world().size() > 1) minidl::Communicator::world().abort(e.what());
    spdlog::error("{}", e.what());
  }
  return 1;
}
