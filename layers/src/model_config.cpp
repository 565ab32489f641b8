// ModelConfig as a checkpoint's metadata stores it: the description, the normalisation kind and its options, the
// input, the classes or outputs and the data's column names; read back with every value checked.
#include <algorithm>
#include <cmath>

#include "minidl/internal/text.h"
#include "minidl/models.h"
#include "minidl/normalization.h"

namespace minidl {
namespace {
using internal::split;
constexpr const char* kUnit = "\x1f";  // the ASCII unit separator: between a text column's name and categories
}  // namespace

Metadata ModelConfig::to_metadata() const {
  Metadata m{{"model.description", description},
             {"model.norm", norm},
             {"model.input_shape", shape_text(input_shape)},
             {"model.classes", std::to_string(classes)},
             {"model.epsilon", exact_text(epsilon)},
             {"model.seed", std::to_string(seed)}};
  // The kind's settings given explicitly (the defaults are the kind's: older readers never see them).
  for (const NormOption& o : norm_kind(norm).options)
    if (const auto it = norm_options.find(o.key); it != norm_options.end() && !std::isnan(it->second))
      m["model." + o.key] = exact_text(it->second);
  // Names one per line: CSV fields never hold a line break. Each key only when set: older readers never see it.
  const auto lines = [&](const char* key, const std::vector<std::string>& names) {
    if (!names.empty()) m[key] = internal::join(names, "\n");
  };
  lines("model.class_names", class_names);
  if (outputs > 0) m["model.outputs"] = std::to_string(outputs);
  lines("model.output_names", output_names);
  lines("model.feature_names", feature_names);
  // One line per text column: its name, then its categories, separated by the ASCII unit separator.
  std::vector<std::string> encoded;
  for (const auto& [column, values] : categories) encoded.push_back(column + kUnit + internal::join(values, kUnit));
  lines("model.categories", encoded);
  return m;
}

ModelConfig ModelConfig::from_metadata(const MetadataReader& m) {
  ModelConfig c;
  c.description = m.text("model.description");
  c.norm = m.text("model.norm");
  const NormKind* kind = nullptr;
  try {
    kind = &norm_kind(c.norm);
  } catch (const Error& e) {
    m.fail_at("model.norm", e.what());
  }
  c.input_shape = m.shape("model.input_shape");
  c.classes = m.integer("model.classes", 0, int64_t{1} << 24);
  c.epsilon = static_cast<float>(m.number("model.epsilon", 1e-12, 1e3));
  c.seed = static_cast<uint64_t>(m.integer("model.seed", 0, INT64_MAX));
  for (const NormOption& o : kind->options) {
    // Before the registry, frozen mode's setting was a training key.
    const std::string key = o.key == "freeze_epochs" && !m.has("model.freeze_epochs") ? "train.freeze_epochs" : "model." + o.key;
    if (!m.has(key)) continue;
    const double v = m.number(key, o.min, o.max);
    try {
      o.check(v, "it");
    } catch (const Error& e) {
      m.fail_at(key, e.what());
    }
    c.norm_options[o.key] = o.held(v);
  }
  if (m.has("model.outputs")) c.outputs = m.integer("model.outputs", 1, int64_t{1} << 24);
  const auto lines = [&](const char* key, int64_t count, const char* what) {
    std::vector<std::string> names;
    if (!m.has(key)) return names;
    names = split(m.text(key), '\n');
    if (count >= 0 && static_cast<int64_t>(names.size()) != count)
      m.fail_at(key, "names " + std::to_string(names.size()) + " " + what + ", but the model has " + std::to_string(count));
    return names;
  };
  c.class_names = lines("model.class_names", c.classes, "classes");
  c.output_names = lines("model.output_names", c.outputs, "outputs");
  for (const std::string& line : lines("model.categories", -1, "")) {
    std::vector<std::string> parts = split(line, kUnit[0]);
    const std::string column = parts.front();
    parts.erase(parts.begin());
    if (parts.empty() || !std::is_sorted(parts.begin(), parts.end()) || !c.categories.emplace(column, parts).second)
      m.fail_at("model.categories", "column '" + column + "' is listed twice, or without sorted categories");
  }
  // Each number column is one input, each text column one per category.
  int64_t inputs = 0;
  c.feature_names = lines("model.feature_names", -1, "");
  for (const std::string& name : c.feature_names)
    inputs += c.categories.count(name) ? static_cast<int64_t>(c.categories.at(name).size()) : 1;
  if (!c.feature_names.empty() && inputs != c.input_shape.numel())
    m.fail_at("model.feature_names", "its columns make " + std::to_string(inputs) + " inputs, but the model takes " +
                                         std::to_string(c.input_shape.numel()));
  return c;
}

}  // namespace minidl
