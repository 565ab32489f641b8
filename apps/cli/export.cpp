// `minidl export`: a saved model as an ONNX file (opset 13) that ONNX runtimes load: pixels / 255 (or the table's
// features) in, class probabilities (or a regression model's values) out, batch normalisation with its moving
// statistics.
#include <spdlog/spdlog.h>

#include "cli.h"
#include "minidl/atomic_file.h"
#include "minidl/onnx.h"

namespace minidl::cli {

int export_command(int argc, char** argv) {
  cxxopts::Options options("minidl export", "Write a saved model as an ONNX file");
  options.add_options()("model", "the checkpoint (safetensors)", cxxopts::value<std::string>())(
      "out", "the ONNX file to write", cxxopts::value<std::string>())("h,help", "show this help");
  const auto f = parse_flags(options, argc, argv, "minidl export --model model.safetensors --out model.onnx");
  if (!f.count("model") || !f.count("out")) fail("--model FILE and --out FILE.onnx are required");
  check_extension(f["out"].as<std::string>(), "--out", ".onnx");
  check_outputs({{"--out", f["out"].as<std::string>()}}, {{"--model", f["model"].as<std::string>()}});
  check_writable(f["out"].as<std::string>(), "--out");
  const LoadedModel loaded = load_model(f["model"].as<std::string>());
  refuse_non_finite(loaded.checkpoint, f["model"].as<std::string>());
  const bool regression = loaded.config.outputs > 0;
  const std::string output = regression ? "values" : "probabilities";
  export_onnx(*loaded.model, f["out"].as<std::string>(), output);
  spdlog::info("wrote {}: input [N,{}] float32 ({}), output {} [N,{}]", f["out"].as<std::string>(),
               shape_text(loaded.model->input_shape()), loaded.model->input_shape().rank() == 1 ? "the features" : "pixels / 255",
               output, loaded.model->output_shape({1, loaded.model->input_shape().numel()})[1]);
  return 0;
}

}  // namespace minidl::cli
