// `minidl summary`: a model's layers, output shapes and parameter counts as Keras's model.summary() prints
// them, for a description (--model, with --norm) or a checkpoint (`summary FILE`, or --model FILE).
#include <filesystem>
#include <cstdio>

#include "cli.h"
#include "minidl/internal/text.h"

namespace minidl::cli {

int summary_command(int argc, char** argv) {
  cxxopts::Options options("minidl summary", "A model's layers, output shapes and parameter counts");
  add_model_flags(options);
  add_common_flags(options);
  options.add_options()("file", "a checkpoint (as --model FILE)", cxxopts::value<std::string>());
  options.parse_positional({"file"});
  options.positional_help("[CHECKPOINT]");
  const auto f = parse_flags(options, argc, argv, "minidl summary --model dense:256,relu,bn,dense:128,relu,bn,dense:10,softmax");
  ModelConfig config;
  std::shared_ptr<Sequential> model;
  if (f.count("file") && f.count("model")) fail("give the checkpoint once: `minidl summary FILE` or --model FILE");
  const std::string given = f.count("file") ? f["file"].as<std::string>() : f.count("model") ? f["model"].as<std::string>() : "";
  std::error_code error;  // a long description is no file name: "File name too long" is an answer, not an error
  const bool is_file = !given.empty() && std::filesystem::is_regular_file(given, error);
  if (f.count("file") && !is_file)
    fail("'", internal::excerpt(given), "' is not a checkpoint file (a description goes after --model)");
  if (is_file) {
    LoadedModel loaded = load_model(given);
    config = loaded.config;
    model = loaded.model;
  } else {
    // The input shape and class count come from the data, as for training.
    config = model_config_from_flags(f, load_logged(data_spec_from_flags(f)).train);
    model = build_model(config);
  }
  std::printf("%s (norm %s, input %s)\n%s", config.description.c_str(), config.norm.c_str(),
              config.input_shape.str().c_str(), model->summary().c_str());
  return 0;
}

}  // namespace minidl::cli
