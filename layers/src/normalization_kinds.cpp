// The norm modes (what each `bn` of a description becomes) and the grammar's normalisation kinds: bn with its
// ghost and renorm options, layernorm and groupnorm. docs/models.md and docs/normalization.md describe them.
#include "normalization_kinds.h"

#include <cmath>
#include <cstdlib>

namespace minidl {
namespace {
constexpr NormMode kModes[] = {NormMode::running, NormMode::batchwise, NormMode::manual, NormMode::none,
                               NormMode::ghost,   NormMode::renorm,    NormMode::layer,  NormMode::group,
                               NormMode::frozen};

float clip_option(const LayerArgs& a, const char* key, float fallback, double min, double max) {
  return static_cast<float>(a.option_number(key, fallback, min, max));
}

// A BatchNormalization as the mode and the layer's options say.
std::shared_ptr<Module> make_batch_norm(const LayerArgs& a, int64_t channels, float epsilon) {
  const ModelConfig& c = a.config;
  BatchNormalizationOptions o{.momentum = static_cast<float>(a.option_number("momentum", c.bn_momentum(), 0.0, 1.0)),
                              .epsilon = epsilon};
  const int64_t ghost = c.norm == NormMode::ghost ? c.ghost_batch_size() : 0;
  o.virtual_batch_size = a.option_integer("virtual_batch_size", ghost, 0, int64_t{1} << 20);
  const std::string renorm = a.option("renorm").value_or(c.norm == NormMode::renorm ? "1" : "0");
  if (renorm != "0" && renorm != "1") a.fail("renorm must be 1 or 0, got '" + renorm + "'");
  o.renorm = renorm == "1";
  o.renorm_momentum = clip_option(a, "renorm_momentum", c.renorm_momentum, 0.0, 1.0);
  o.rmax = clip_option(a, "rmax", c.rmax, 0.0, 1e30);
  o.rmin = clip_option(a, "rmin", c.rmin, 0.0, 1e30);
  o.dmax = clip_option(a, "dmax", c.dmax, 0.0, 1e30);
  return std::make_shared<BatchNormalization>(channels, o);
}

float epsilon_of(const LayerArgs& a) {
  return static_cast<float>(a.option_number("epsilon", a.config.epsilon, 1e-12, 1e3));
}

int64_t groups_of(const LayerArgs& a, int64_t channels, int64_t fallback) {
  const int64_t groups = a.spec.values.empty() ? fallback : a.integer(0, "groups", 1, int64_t{1} << 24);
  if (channels % groups != 0)
    a.fail(std::to_string(groups) + " groups do not divide the " + std::to_string(channels) +
           " channels: choose a divisor of " + std::to_string(channels) + (a.spec.values.empty() ? " (--groups)" : ""));
  return groups;
}
}  // namespace

std::string to_string(NormMode mode) {
  switch (mode) {
    case NormMode::running: return "running";
    case NormMode::batchwise: return "batchwise";
    case NormMode::manual: return "manual";
    case NormMode::none: return "none";
    case NormMode::ghost: return "ghost";
    case NormMode::renorm: return "renorm";
    case NormMode::layer: return "layer";
    case NormMode::group: return "group";
    case NormMode::frozen: return "frozen";
  }
  return "?";
}

NormMode parse_norm_mode(const std::string& text) {
  std::string names;
  for (NormMode mode : kModes) {
    if (text == to_string(mode)) return mode;
    names += (names.empty() ? "" : ", ") + to_string(mode);
  }
  fail("unknown normalisation mode '", text, "': choose one of ", names);
}

bool has_moving_statistics(NormMode mode) {
  return mode != NormMode::manual && mode != NormMode::none && mode != NormMode::layer && mode != NormMode::group;
}

std::vector<LayerKind> normalization_kinds() {
  std::vector<LayerKind> k;
  k.push_back({"bn", {"batch_normalization", "batchnorm"},
               "bn[:momentum=M][:epsilon=E][:virtual_batch_size=V][:renorm=1][:renorm_momentum=M][:rmax=R][:rmin=R][:dmax=D]",
               "normalisation over the batch, as --norm says: running, batchwise, manual, none, ghost, renorm, layer, "
               "group or frozen", 0, 0,
               {"momentum", "epsilon", "virtual_batch_size", "renorm", "renorm_momentum", "rmax", "rmin", "dmax"}, false,
               [](const LayerArgs& a) -> std::shared_ptr<Module> {
                 const int64_t channels = a.input[a.input.rank() - 1];
                 const float epsilon = epsilon_of(a);
                 switch (a.config.norm) {
                   case NormMode::none: return nullptr;
                   case NormMode::manual: return std::make_shared<MomentsNormalization>(channels, epsilon);
                   case NormMode::layer: return std::make_shared<LayerNormalization>(channels, epsilon);
                   case NormMode::group:
                     return std::make_shared<GroupNormalization>(channels, groups_of(a, channels, a.config.group_count()),
                                                                 epsilon);
                   default: return make_batch_norm(a, channels, epsilon);
                 }
               }});
  k.push_back({"layernorm", {"layer_normalization"}, "layernorm[:epsilon=E]",
               "Keras LayerNormalization: each position normalised over its last axis", 0, 0, {"epsilon"}, false,
               [](const LayerArgs& a) -> std::shared_ptr<Module> {
                 return std::make_shared<LayerNormalization>(a.input[a.input.rank() - 1], epsilon_of(a));
               }});
  k.push_back({"groupnorm", {"group_normalization"}, "groupnorm[:GROUPS][:epsilon=E]",
               "Keras GroupNormalization(GROUPS, default 32): each sample's channels in groups, over every position", 0, 1,
               {"epsilon"}, false, [](const LayerArgs& a) -> std::shared_ptr<Module> {
                 const int64_t channels = a.input[a.input.rank() - 1];
                 return std::make_shared<GroupNormalization>(channels, groups_of(a, channels, 32), epsilon_of(a));
               }});
  return k;
}

}  // namespace minidl
