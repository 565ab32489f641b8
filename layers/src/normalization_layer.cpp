// The base the normalisation layers share (minidl/layers.h): their channels on the last axis and epsilon, checked
// once here.
#include "minidl/layers.h"

#include <algorithm>

namespace minidl {

Normalization::Normalization(const char* type, int64_t features, float epsilon, std::string name, int min_rank,
                             const char* word)
    : Module(std::move(name)), features_(features), epsilon_(epsilon), min_rank_(min_rank), word_(word) {
  if (features <= 0) fail(type, ": ", word, " must be > 0, got ", features);
  if (!(epsilon > 0.0f)) fail(type, ": epsilon must be > 0, got ", epsilon);
}

int64_t Normalization::min_batch_for_statistics(const Shape& input) const {
  const int64_t positions = input.rank() > 1 ? input.numel() / std::max<int64_t>(input[0], 1) / features_ : 1;
  return positions >= 2 ? 1 : 2;
}

Shape Normalization::output_shape(const Shape& input) const {
  if (input.rank() < min_rank_ || input[input.rank() - 1] != features_)
    fail(type_name(), " '", name(), "': expects ", features_, " ", word_, " on the last axis, got ", input.str());
  return input;
}

}  // namespace minidl
