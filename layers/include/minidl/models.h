// Models from a description: a small grammar for a stack of layers ("dense:256,relu,bn,dense:10,softmax"),
// a registry of layer kinds that turns it into a Sequential, and the configuration a checkpoint stores to
// build the same model again. The grammar and every kind are documented in docs/models.md.
#pragma once

#include <cmath>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "minidl/layers.h"
#include "minidl/metadata.h"

namespace minidl {

/// What each `bn` of a description becomes: the document's three ways of normalising, or nothing.
enum class NormMode {
  running,    ///< BatchNormalization() with moving statistics (Example 1)
  batchwise,  ///< BatchNormalization(momentum = 0) (Example 2)
  manual,     ///< moments + batch_normalization, always batch statistics (Example 3)
  none,       ///< no normalisation: the baseline
  ghost,      ///< BatchNormalization(virtual_batch_size = V): ghost batches of V samples
  renorm,     ///< BatchNormalization(renorm = True): batch renormalisation
  layer,      ///< LayerNormalization: each sample over its features
  group,      ///< GroupNormalization: each sample over groups of channels
  frozen,     ///< running, with the statistics frozen for the last epochs (Wu & Johnson's FrozenBN)
};

std::string to_string(NormMode mode);
/// Parses "running", "batchwise", "manual", "none"; throws naming the valid choices.
NormMode parse_norm_mode(const std::string& text);
/// True for the modes whose layers keep moving statistics (not manual, none, layer, group).
bool has_moving_statistics(NormMode mode);

/// The document's model: Dense(64, relu) → normalisation → Dense(10, softmax).
inline constexpr const char* kDocumentModel = "dense:64,relu,bn,dense:10,softmax";
/// The document's model with another hidden width and class count (what `--hidden N` stands for).
std::string document_model_description(int64_t hidden, int64_t classes);

/// One layer as written: `kind(:value)*(:key=value)*`, e.g. "conv:32x3:strides=2".
struct LayerSpec {
  std::string kind;
  std::vector<std::string> values;                            ///< positional, in order
  std::vector<std::pair<std::string, std::string>> options;   ///< key=value, in order
  int position = 0;                                           ///< 1-based index in the description
  std::string text;                                           ///< the token as written, trimmed
};

/// Parses a description into its layers. Blanks around tokens are ignored. Throws minidl::Error naming the
/// token, its position and what was expected (an unknown kind names the valid ones).
std::vector<LayerSpec> parse_model_description(const std::string& description);
/// The description in its one canonical spelling (registered kind names, no blanks), for comparing two.
std::string canonical_description(const std::string& description);

/// Everything needed to build a model again: a checkpoint stores it in its metadata.
struct ModelConfig {
  std::string description = kDocumentModel;
  NormMode norm = NormMode::running;
  /// One sample as the data gives it: [28,28,1] for images, [features] for tables. A model whose first layer
  /// takes images (conv, pooling) gets it as it is; any other model gets it flattened ([784]).
  Shape input_shape{28, 28, 1};
  /// The number of classes: the model must end with that many outputs and a softmax (0: not checked).
  int64_t classes = 10;
  /// The classes' names, when the data names them (a CSV's text labels), in class order; else empty.
  std::vector<std::string> class_names;
  /// BatchNormalization momentum (Keras convention); unset: 0.99, or 0 in batchwise mode.
  std::optional<float> momentum;
  float epsilon = 1e-3f;  ///< normalisation epsilon
  uint64_t seed = 1;      ///< initial weights and dropout masks
  /// Ghost mode: each bn's virtual_batch_size (0: kDefaultVirtualBatchSize).
  int64_t virtual_batch_size = 0;
  /// Group mode: each bn's number of groups (0: Keras's 32).
  int64_t groups = 0;
  /// Renorm mode: renorm_momentum and the clipping of r and d (NaN: unclipped, Keras's default).
  float renorm_momentum = 0.99f, rmax = NAN, rmin = NAN, dmax = NAN;

  static constexpr int64_t kDefaultVirtualBatchSize = 8;
  /// The momentum a `bn` gets when its description does not say.
  float bn_momentum() const;
  int64_t ghost_batch_size() const { return virtual_batch_size ? virtual_batch_size : kDefaultVirtualBatchSize; }
  int64_t group_count() const { return groups ? groups : 32; }
  Metadata to_metadata() const;  ///< keys model.description, model.norm, model.input_shape, ...
  static ModelConfig from_metadata(const MetadataReader& metadata);
};

/// What a layer factory sees: the layer as written, the shape of one sample reaching it (no batch axis), the
/// model's configuration and the generator its initial weights come from. Readers of the layer's values and
/// options check them and throw naming the layer.
class LayerArgs {
 public:
  LayerArgs(const LayerSpec& spec, const Shape& input, const ModelConfig& config, Generator& gen)
      : spec(spec), input(input), config(config), gen(gen) {}
  const LayerSpec& spec;
  const Shape& input;
  const ModelConfig& config;
  Generator& gen;

  /// Positional value `index` as a whole number in [min, max].
  int64_t integer(size_t index, const char* what, int64_t min, int64_t max) const;
  /// Positional value `index` as a number in [min, max] (or [min, max) with open_max).
  double number(size_t index, const char* what, double min, double max, bool open_max = false) const;
  /// Option `key`, if given.
  std::optional<std::string> option(const std::string& key) const;
  /// Option `key` as a number in [min, max], or `fallback` when absent.
  double option_number(const std::string& key, double fallback, double min, double max) const;
  /// Option `key` as a whole number in [min, max], or `fallback` when absent.
  int64_t option_integer(const std::string& key, int64_t fallback, int64_t min, int64_t max) const;
  /// Throws minidl::Error naming the layer ("layer 4 'dense:0'") and the message.
  [[noreturn]] void fail(const std::string& message) const;
};

/// A kind of layer the grammar knows. Adding one is one register_layer_kind call.
struct LayerKind {
  std::string name;                   ///< as written in descriptions: "dense"
  std::vector<std::string> aliases;   ///< other spellings accepted: "batch_normalization"
  std::string usage;                  ///< "dense:UNITS"
  std::string help;                   ///< one line for docs and --help
  size_t min_values = 0, max_values = 0;  ///< how many positional values it takes
  std::vector<std::string> option_keys;   ///< the key=value options it takes
  bool takes_images = false;          ///< works on [H, W, C] samples (a model starting with it gets images)
  /// Builds the layer; an empty pointer leaves it out of the model (`bn` when the norm mode is none).
  std::function<std::shared_ptr<Module>(const LayerArgs&)> make;
};

/// Adds a kind (its name and aliases must be new) to the registry the builder and parser use.
void register_layer_kind(LayerKind kind);
/// Every registered kind, built-ins first.
const std::vector<LayerKind>& layer_kinds();

/// Builds the model a configuration describes, with Keras's layer names counted in this model alone (dense,
/// dense_1, batch_normalization, ...), its input shape declared, and — when classes > 0 — checked to end with
/// `classes` outputs through a softmax. Initial weights come from Generator(config.seed). Errors name the layer.
std::shared_ptr<Sequential> build_model(const ModelConfig& config);
/// The same, drawing initial weights from `gen`.
std::shared_ptr<Sequential> build_model(const ModelConfig& config, Generator& gen);

struct DocumentModelOptions {
  int64_t inputs = 784;
  int64_t hidden = 64;
  int64_t classes = 10;
  /// For running mode; batchwise mode forces momentum 0 unless `momentum_set` is true.
  BatchNormalizationOptions batch_norm{};
  bool momentum_set = false;
};

/// The document's model in a mode (built from its description), with Keras's names: dense,
/// batch_normalization, dense_1.
std::shared_ptr<Sequential> make_document_model(NormMode mode, const DocumentModelOptions& options, Generator& gen);

}  // namespace minidl
