// The document's model in each normalisation mode: Dense(hidden, relu) → normalisation → Dense(10, softmax).
#pragma once

#include <memory>
#include <string>

#include "minidl/layers.h"

namespace minidl {

/// How the document's model normalises its hidden layer.
enum class NormMode {
  running,    ///< BatchNormalization() with moving statistics (Example 1)
  batchwise,  ///< BatchNormalization(momentum = 0) (Example 2)
  manual,     ///< moments + batch_normalization, always batch statistics (Example 3)
  none,       ///< no normalisation: the baseline
};

std::string to_string(NormMode mode);
/// Parses "running", "batchwise", "manual", "none"; throws naming the valid choices.
NormMode parse_norm_mode(const std::string& text);

struct DocumentModelOptions {
  int64_t inputs = 784;
  int64_t hidden = 64;
  int64_t classes = 10;
  /// For running mode; batchwise mode forces momentum 0 unless `momentum_set` is true.
  BatchNormalizationOptions batch_norm{};
  bool momentum_set = false;
};

/// Builds the model with Keras's names (dense, batch_normalization, dense_1) whatever the mode; call
/// clear_session() first when the names must start from scratch.
std::shared_ptr<Sequential> make_document_model(NormMode mode, const DocumentModelOptions& options, Generator& gen);

}  // namespace minidl
