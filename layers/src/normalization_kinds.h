// The normalisation layer kinds of the model grammar (bn, layernorm, groupnorm, rmsnorm): what models.cpp's registry
// adds from normalization_kinds.cpp.
#pragma once

#include <vector>

#include "minidl/models.h"

namespace minidl {

std::vector<LayerKind> normalization_kinds();

}  // namespace minidl
