// `minidl predict`: class probabilities (or, for a regression model, the predicted values) of a saved model for
// image files, a CSV of new samples, or the first samples of its test data; a line per sample (or JSON).
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <numeric>

#include "cli.h"
#include "minidl/atomic_file.h"

namespace minidl::cli {
namespace {
// Image files as one batch [n, H·W·C] scaled as the loader scales pixels; each must be the model's size, and is
// read with the model's channels (grayscale, or RGB).
Tensor read_images(const std::vector<std::string>& paths, const Shape& input) {
  if (input.rank() != 3 || (input[2] != 1 && input[2] != 3))
    fail("the model takes samples of shape ", input.str(), ", not grayscale or RGB images");
  Tensor x = Tensor::empty({static_cast<int64_t>(paths.size()), input.numel()});
  for (size_t i = 0; i < paths.size(); ++i) {
    const Image image = read_image(paths[i], static_cast<int>(input[2]));
    if (image.height != input[0] || image.width != input[1])
      fail("'", paths[i], "' is ", image.width, "x", image.height, " pixels; the model takes ", input[1], "x", input[0],
           " images");
    std::transform(image.pixels.begin(), image.pixels.end(), x.data() + static_cast<int64_t>(i) * input.numel(),
                   [](uint8_t p) { return static_cast<float>(p) * (1.0f / 255.0f); });
  }
  return x;
}

// A CSV field: quoted when it holds a comma, a quote or a line break (RFC 4180).
std::string csv_field(const std::string& text) {
  if (text.find_first_of(",\"\r\n") == std::string::npos) return text;
  std::string quoted = "\"";
  for (char c : text) quoted += c == '"' ? std::string("\"\"") : std::string(1, c);
  return quoted + "\"";
}

// The predictions as a CSV table, atomically: index, the file (for images), the predicted class and its name,
// then one column per class probability (p_NAME) — or, for a regression model, one per output, named as its
// targets.
void write_csv(const std::string& path, const Tensor& p, const ModelConfig& config, const std::vector<std::string>& files) {
  const bool regression = config.outputs > 0;
  const int64_t columns = p.size(1);
  const auto column_name = [&](int64_t k) {
    const std::vector<std::string>& names = regression ? config.output_names : config.class_names;
    const std::string name = k < static_cast<int64_t>(names.size()) ? names[k] : std::to_string(k);
    return regression ? (names.empty() ? "value_" + name : name) : "p_" + name;
  };
  std::string text = "index";
  if (!files.empty()) text += ",file";
  if (!regression) text += config.class_names.empty() ? ",class" : ",class,name";
  for (int64_t k = 0; k < columns; ++k) text += "," + csv_field(column_name(k));
  text += "\n";
  for (int64_t i = 0; i < p.size(0); ++i) {
    const float* row = p.data() + i * columns;
    text += std::to_string(i);
    if (!files.empty()) text += "," + csv_field(files[i]);
    if (!regression) {
      const int64_t best = std::max_element(row, row + columns) - row;  // ties: the lowest index, as accuracy
      text += "," + std::to_string(best);
      if (!config.class_names.empty()) text += "," + csv_field(config.class_names[best]);
    }
    for (int64_t k = 0; k < columns; ++k) text += fmt::format(",{:.9g}", row[k]);
    text += "\n";
  }
  write_text_atomically(path, text);
}

// One sigmoid probability per row as the two classes' probabilities [1 − p, p].
Tensor two_classes(const Tensor& p) {
  Tensor out = Tensor::empty({p.size(0), 2});
  for (int64_t i = 0; i < p.size(0); ++i) out.data()[2 * i] = 1.0f - p.data()[i], out.data()[2 * i + 1] = p.data()[i];
  return out;
}

// A regression model's predictions, a line per sample: each output by name, and the target when known.
void print_values(const Tensor& p, const ModelConfig& config, const std::vector<std::string>& files,
                  const std::vector<float>& targets, bool json) {
  const int64_t outputs = p.size(1);
  const auto name = [&](int64_t k) {
    return k < static_cast<int64_t>(config.output_names.size()) ? config.output_names[k] : "value " + std::to_string(k);
  };
  for (int64_t i = 0; i < p.size(0); ++i) {
    const float* row = p.data() + i * outputs;
    if (json) {
      nlohmann::ordered_json line = {{"index", i}, {"values", std::vector<float>(row, row + outputs)}};
      if (!files.empty()) line["file"] = files[i];
      if (!targets.empty()) line["targets"] = std::vector<float>(targets.begin() + i * outputs, targets.begin() + (i + 1) * outputs);
      std::printf("%s\n", line.dump().c_str());
      continue;
    }
    std::string text = files.empty() ? std::to_string(i) : files[i];
    for (int64_t k = 0; k < outputs; ++k) {
      text += fmt::format("  {} {:.6g}", name(k), row[k]);
      if (!targets.empty()) text += fmt::format("  label {:.6g}", targets[i * outputs + k]);
    }
    std::printf("%s\n", text.c_str());
  }
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
      "out", "write the predictions to this CSV file instead: index, file, then each class's probability (or "
             "each predicted value)", cxxopts::value<std::string>())(
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
  const bool regression = config.outputs > 0;
  const std::string out = f.count("out") ? f["out"].as<std::string>() : "";
  if (!out.empty()) {
    check_extension(out, "--out", ".csv");
    check_writable(out, "--out");
    std::vector<NamedPath> inputs = data_files(data_spec_for(f, loaded.checkpoint.metadata, path, false));
    inputs.push_back({"--model", path});
    if (f.count("images"))
      for (const std::string& image : f["images"].as<std::vector<std::string>>()) inputs.push_back({"an image", image});
    check_outputs({{"--out", out}}, inputs);
  }
  if (!regression && (top < 1 || top > config.classes)) fail("--top must be in [1, ", config.classes, "], got ", top);
  if (batch_size < 1) fail("--batch-size must be >= 1, got ", batch_size);

  // The samples: image files, a CSV of new samples, or the data's test split (with its labels).
  Tensor x;
  std::vector<int32_t> labels;
  std::vector<float> targets;  // regression: the test data's, [n, outputs]
  std::vector<std::string> files;
  if (f.count("images")) {
    files = f["images"].as<std::vector<std::string>>();
    x = read_images(files, config.input_shape);
  } else if (const DataSpec spec = data_spec_for(f, loaded.checkpoint.metadata, path, true); f.count("data") && spec.is_csv()) {
    x = load_csv_features(spec.train, spec.csv(), config.feature_names, config.input_shape.numel(), config.categories);
  } else {
    const Dataset test = load_logged(spec).test;
    check_data_fits(config, test, "in '" + path + "'");
    x = test.to_tensor();
    labels = test.labels;
    targets = test.targets;
  }
  if (f.count("first")) {
    const int64_t n = f["first"].as<int64_t>();
    if (n < 1) fail("--first must be >= 1, got ", n);
    if (n < x.size(0)) {
      x = Tensor::from({n, x.size(1)}, {x.data(), static_cast<size_t>(n * x.size(1))});
      if (!labels.empty()) labels.resize(static_cast<size_t>(n));
      if (!targets.empty()) targets.resize(static_cast<size_t>(n * config.outputs));
      if (!files.empty()) files.resize(static_cast<size_t>(n));
    }
  }
  int per_batch = 0;  // layers (in blocks too) that normalise each batch by itself in inference
  for_each_module<Module>(*loaded.model, [&](const Module& m) { per_batch += m.type_name() == "MomentsNormalization"; });
  if (per_batch > 0)
    spdlog::warn("this model normalises each batch with that batch's statistics (manual mode): a prediction depends "
                 "on the other samples in its batch (batch size {}, --batch-size)", batch_size);

  Tensor p = predict(*loaded.model, x, batch_size);
  if (!outputs_finite(*loaded.model, x, p)) return 3;
  if (!regression && p.size(1) == 1) p = two_classes(p);
  if (!out.empty()) {
    write_csv(out, p, config, files);
    spdlog::info("wrote {} predictions to {}", p.size(0), out);
    return 0;
  }
  if (regression) {
    print_values(p, config, files, targets, f["json"].as<bool>());
    return 0;
  }
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
