// Checks of the data against the model before training: sizes and classes that fit, and features so unequal in
// scale that training suffers unscaled (a warning).
#include <spdlog/spdlog.h>

#include <cmath>

#include "run.h"

namespace minidl::cli {

// Features whose spreads differ by more than this factor train badly unscaled (a step size that suits one is
// far off for the other).
constexpr double kScaleRatio = 1000.0;

void warn_if_unscaled(const ModelConfig& model, const Dataset& train) {
  if (train.is_images() || train.size() < 2) return;
  for (const LayerSpec& layer : parse_model_description(model.description))
    if (layer.kind == "normalize") return;
  const int64_t f = train.features();
  std::vector<double> lo(f, INFINITY), hi(f, -INFINITY);
  for (int64_t r = 0; r < train.size(); ++r)
    for (int64_t j = 0; j < f; ++j) {
      const double v = train.values[r * f + j];
      lo[j] = std::min(lo[j], v), hi[j] = std::max(hi[j], v);
    }
  int64_t widest = 0, narrowest = -1;
  for (int64_t j = 0; j < f; ++j) {
    if (hi[j] - lo[j] > hi[widest] - lo[widest]) widest = j;
    if (hi[j] > lo[j] && (narrowest < 0 || hi[j] - lo[j] < hi[narrowest] - lo[narrowest])) narrowest = j;
  }
  const double ratio = narrowest < 0 ? 1.0 : (hi[widest] - lo[widest]) / (hi[narrowest] - lo[narrowest]);
  if (ratio < kScaleRatio) return;
  const bool named = static_cast<int64_t>(train.feature_names.size()) == f;  // (text columns make several features)
  const auto name = [&](int64_t j) { return named ? "'" + train.feature_names[j] + "'" : "feature " + std::to_string(j); };
  spdlog::warn("the features differ in scale by a factor of {:.0f}: {} spans {:g} to {:g}, {} {:g} to {:g} — unscaled, "
               "the wide ones dominate and training suffers; --standardize (or a normalize layer first) centres and "
               "scales each by the training data", ratio, name(widest), lo[widest], hi[widest], name(narrowest),
               lo[narrowest], hi[narrowest]);
}

void check_data_fits(const ModelConfig& model, const Dataset& data, const std::string& model_source) {
  if (model.outputs > 0 || data.is_regression()) {
    if (data.features() != model.input_shape.numel() || data.outputs != model.outputs)
      fail("the model ", model_source, " takes samples of shape ", model.input_shape.str(), " and predicts ",
           model.outputs > 0 ? std::to_string(model.outputs) + " value(s)" : std::to_string(model.classes) + " classes",
           "; the data has samples of shape ", data.sample.str(), " and ",
           data.is_regression() ? std::to_string(data.outputs) + " target(s)" : std::to_string(data.num_classes) + " classes");
    return;
  }
  if (data.features() != model.input_shape.numel() || data.num_classes > model.classes)
    fail("the model ", model_source, " takes samples of shape ", model.input_shape.str(), " in ", model.classes,
         " classes; the data has samples of shape ", data.sample.str(), " in ", data.num_classes, " classes");
}

}  // namespace minidl::cli
