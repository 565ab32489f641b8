// libFuzzer target: the model description parser and the layer registry behind it — parse, canonical spelling,
// build on a small input, and a forward pass of two samples, under a bound on what building may allocate.
// Anything but minidl::Error is a finding.
#include <string>

#include "minidl/models.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const std::vector<minidl::LayerSpec> layers = minidl::parse_model_description(text);
    // The canonical spelling parses again, to itself.
    const std::string canonical = minidl::canonical_description(text);
    if (minidl::canonical_description(canonical) != canonical) __builtin_trap();
    minidl::ModelConfig config;
    config.description = text;
    config.input_shape = {8, 8, 2};
    config.classes = 0;  // any output width
    // A real description may ask for a big model; here a bound turns that into an error instead of an OOM, and
    // keeps each input fast: 2^18 floats (1 MB) hold every layer kind several times over, and with the 4M
    // floats first tried, inputs grew into models that ran 500 a second.
    const minidl::AllocationLimit limit(int64_t{1} << 18, "the model is larger than the fuzz target's bound");
    const auto model = minidl::build_model(config);
    const minidl::Tensor x = minidl::Tensor::uniform({2, 8, 8, 2}, 0.0f, 1.0f);
    (void)model->forward(x);  // the model views it as [2, ...its input shape]
    (void)layers;
  } catch (const minidl::Error&) {
  }
  return 0;
}
