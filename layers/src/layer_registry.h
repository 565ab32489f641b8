// The registry of layer kinds as the grammar (model_grammar.cpp) and the builder (models.cpp) read it.
#pragma once

#include <string>
#include <vector>

#include "minidl/models.h"

namespace minidl::registry {

/// The kind registered under `name` or one of its aliases; nullptr when there is none.
const LayerKind* find_kind(const std::string& name);
/// Every registered kind's name, in registration order.
std::vector<std::string> kind_names();

}  // namespace minidl::registry
