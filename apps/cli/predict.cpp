// `minidl predict`: class probabilities of a saved model for image files, a CSV of new samples, or the first
// samples of its test data; a line per sample (or JSON).
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <numeric>

#include "cli.h"

namespace minidl::cli {
namespace {
// Image files as one batch [n, H·W] scaled as the loader scales pixels; each must be the model's size.
Tensor read_images(const std::vector<std::string>& paths, const Shape& input) {
  if (input.rank() != 3 || input[2] != 1)
    fail("the model takes samples of shape ", input.str(), ", not grayscale images");
  Tensor x = Tensor::empty({static_cast<int64_t>(paths.size()), input.numel()});
  for (size_t i = 0; i < paths.size(); ++i) {
    const Image image = read_image(paths[i]);
    if (image.height != input[0] || image.width != input[1])
      fail("'", paths[i], "' is ", image.width, "x", image.height, " pixels; the model takes ", input[1], "x", input[0],
           " images");
    std::transform(image.pixels.begin(), image.pixels.end(), x.data() + static_cast<int64_t>(i) * input.numel(),
                   [](uint8_t p) { return static_cast<float>(p) * (1.0f / 255.0f); });
  }
  return x;
}
}  // namespace

int predict_command(int argc, char** argv) {
  cxxopts::Options options("minidl predict", "Class probabilities of a saved model for images, a CSV or its test data");
  options.add_options()("model", "the checkpoint (safetensors)", cxxopts::value<std::string>())(
      "first", "only the first N samples of the data", cxxopts::value<int64_t>())(
      "top", "show the K most probable classes", cxxopts::value<int64_t>()->default_value("1"))(
      "batch-size", "prediction batch size (it matters only for a model that normalises with batch statistics)",
      cxxopts::value<int64_t>()->default_value(std::to_string(kDefaultBatchSize)))(
      "json", "one JSON object per sample: index, class, probabilities")(
      "images", "PNG or PGM files to classify", cxxopts::value<std::vector<std::string>>());
  options.parse_positional({"images"});
  options.positional_help("[IMAGE...]");
  add_common_flags(options);
  const auto f = parse_flags(options, argc, argv, "minidl predict --model model.safetensors --first 5 --json");
  apply_threads(f);
  if (!f.count("model")) fail("--model FILE is required (a checkpoint written by `minidl train --save`)");
  const int64_t top = f["top"].as<int64_t>(), batch_size = f["batch-size"].as<int64_t>();
  const std::string path = f["model"].as<std::string>();
  const LoadedModel loaded = load_model(path);
  refuse_non_finite(loaded.checkpoint, path);
  const ModelConfig& config = loaded.config;
  if (top < 1 || top > config.classes) fail("--top must be in [1, ", config.classes, "], got ", top);
  if (batch_size < 1) fail("--batch-size must be >= 1, got ", batch_size);

  // The samples: image files, a CSV of new samples, or the data's test split (with its labels).
  Tensor x;
  std::vector<int32_t> labels;
  std::vector<std::string> files;
  if (f.count("images")) {
    files = f["images"].as<std::vector<std::string>>();
    x = read_images(files, config.input_shape);
  } else if (const DataSpec spec = data_spec_for(f, loaded.checkpoint.metadata, path, true); f.count("data") && spec.is_csv()) {
    x = load_csv_features(spec.train, spec.label, config.input_shape.numel());
  } else {
    const Dataset test = load_logged(spec).test;
    check_data_fits(config, test, "in '" + path + "'");
    x = test.to_tensor();
    labels = test.labels;
  }
  if (f.count("first")) {
    const int64_t n = f["first"].as<int64_t>();
    if (n < 1) fail("--first must be >= 1, got ", n);
    if (n < x.size(0)) {
      x = Tensor::from({n, x.size(1)}, {x.data(), static_cast<size_t>(n * x.size(1))});
      if (!labels.empty()) labels.resize(static_cast<size_t>(n));
      if (!files.empty()) files.resize(static_cast<size_t>(n));
    }
  }
  for (const auto& layer : loaded.model->children())
    if (layer->type_name() == "MomentsNormalization")
      spdlog::warn("this model normalises each batch with that batch's statistics (manual mode): a prediction depends "
                   "on the other samples in its batch (batch size {}, --batch-size)", batch_size);

  const Tensor p = predict(*loaded.model, x, batch_size);
  const int64_t classes = p.size(1);
  const auto name = [&](int64_t c) { return c < static_cast<int64_t>(config.class_names.size()) ? config.class_names[c] : ""; };
  for (int64_t i = 0; i < p.size(0); ++i) {
    const float* row = p.data() + i * classes;
    std::vector<int64_t> order(static_cast<size_t>(classes));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return row[a] > row[b]; });
    if (f["json"].as<bool>()) {
      nlohmann::ordered_json line = {{"index", i}, {"class", order[0]}, {"probabilities", std::vector<float>(row, row + classes)}};
      if (!config.class_names.empty()) line["name"] = name(order[0]);
      if (!files.empty()) line["file"] = files[i];
      if (!labels.empty()) line["label"] = labels[i];
      if (top > 1)
        for (int64_t k = 0; k < top; ++k) line["top"].push_back({{"class", order[k]}, {"probability", row[order[k]]}});
      std::printf("%s\n", line.dump().c_str());
      continue;
    }
    std::string text = (files.empty() ? std::to_string(i) : files[i]) + "  class " + std::to_string(order[0]);
    if (!config.class_names.empty()) text += " (" + name(order[0]) + ")";
    char buf[64];
    std::snprintf(buf, sizeof buf, "  p=%.4f", row[order[0]]);
    text += buf;
    for (int64_t k = 1; k < top; ++k) {
      std::snprintf(buf, sizeof buf, "%s %lld:%.4f", k == 1 ? "  next" : ",", static_cast<long long>(order[k]), row[order[k]]);
      text += buf;
    }
    if (!labels.empty()) text += "  label " + std::to_string(labels[i]) + (labels[i] == order[0] ? "" : "  (wrong)");
    std::printf("%s\n", text.c_str());
  }
  return 0;
}

}  // namespace minidl::cli
