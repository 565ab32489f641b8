// The document's model, built in each normalisation mode with Keras's layer names.
#include "minidl/models.h"

namespace minidl {

std::string to_string(NormMode mode) {
  switch (mode) {
    case NormMode::running: return "running";
    case NormMode::batchwise: return "batchwise";
    case NormMode::manual: return "manual";
    case NormMode::none: return "none";
  }
  return "?";
}

NormMode parse_norm_mode(const std::string& text) {
  for (NormMode mode : {NormMode::running, NormMode::batchwise, NormMode::manual, NormMode::none})
    if (text == to_string(mode)) return mode;
  fail("unknown normalisation mode '", text, "': choose one of running, batchwise, manual, none");
}

std::shared_ptr<Sequential> make_document_model(NormMode mode, const DocumentModelOptions& options, Generator& gen) {
  auto model = std::make_shared<Sequential>();
  model->add(std::make_shared<Dense>(options.inputs, options.hidden, Activation::relu, gen));
  BatchNormalizationOptions bn = options.batch_norm;
  switch (mode) {
    case NormMode::batchwise:
      if (!options.momentum_set) bn.momentum = 0.0f;
      [[fallthrough]];
    case NormMode::running: model->add(std::make_shared<BatchNormalization>(options.hidden, bn)); break;
    case NormMode::manual: model->add(std::make_shared<MomentsNormalization>(options.hidden, bn.epsilon)); break;
    case NormMode::none: break;
  }
  model->add(std::make_shared<Dense>(options.hidden, options.classes, Activation::softmax, gen));
  return model;
}

}  // namespace minidl
