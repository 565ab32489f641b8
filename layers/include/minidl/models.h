// Models from a description: a small grammar for a stack of layers ("dense:256,relu,bn,dense:10,softmax"),
// a registry of layer kinds that turns it into a Sequential, and the configuration a checkpoint stores to
// build the same model again. The grammar and every kind are documented in docs/models.md.
#pragma once

#include <cmath>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "minidl/layers.h"
#include "minidl/losses.h"
#include "minidl/metadata.h"

namespace minidl {

/// The document's model: Dense(64, relu) → normalisation → Dense(10, softmax).
inline constexpr const char* kDocumentModel = "dense:64,relu,bn,dense:10,softmax";
/// The document's model with another hidden width and class count (what `--hidden N` stands for).
std::string document_model_description(int64_t hidden, int64_t classes);

/// One layer as written: `kind(:value)*(:key=value)*`, e.g. "conv:32x3:strides=2"; or a residual block,
/// `residual(LAYERS)`, whose layers are in `layers`. `N*` before either repeats it N times; `N*(LAYERS)` repeats
/// a group, whose layers take its place (each with the group's position).
struct LayerSpec {
  std::string kind;                                           ///< a registered kind's name, or "residual"
  std::vector<std::string> values;                            ///< positional, in order
  std::vector<std::pair<std::string, std::string>> options;   ///< key=value, in order
  int position = 0;                                           ///< 1-based index in its list as written
  std::string text;                                           ///< the token as written, trimmed
  std::vector<LayerSpec> layers;                              ///< residual: the block's layers
};

/// Limits of the grammar: a block nests at most this deep, a repetition repeats at most kMaxRepeat times, and a
/// description expands to at most kMaxLayers layers in all.
inline constexpr int kMaxNesting = 32;
inline constexpr int64_t kMaxRepeat = 10000;
inline constexpr int64_t kMaxLayers = 100000;

/// The document's model for regression: Dense(hidden, relu) → normalisation → Dense(outputs), no activation.
std::string regression_model_description(int64_t hidden, int64_t outputs);
/// default_loss for the model a description builds, read from its last layer without building it.
Loss default_loss_of(const std::string& description);

/// Parses a description into its layers, repetitions expanded (`3*residual(...)` gives three specs). Blanks
/// around tokens are ignored. Throws minidl::Error naming the token, its position and what was expected (an
/// unknown kind names the valid ones).
std::vector<LayerSpec> parse_model_description(const std::string& description);
/// The description in its one canonical spelling (registered kind names, no blanks), for comparing two.
std::string canonical_description(const std::string& description);

/// Everything needed to build a model again: a checkpoint stores it in its metadata.
struct ModelConfig {
  std::string description = kDocumentModel;
  /// What each `bn` becomes: a registered normalisation kind (minidl/normalization.h), "running" by default.
  std::string norm = "running";
  /// The norm kind's settings given explicitly, by option key ("momentum", "virtual_batch_size"); the others
  /// take the kind's defaults. Keys the kind does not have are ignored.
  std::map<std::string, double> norm_options;
  /// One sample as the data gives it: [28,28,1] for images, [features] for tables. A model whose first layer
  /// takes images (conv, pooling) gets it as it is; any other model gets it flattened ([784]).
  Shape input_shape{28, 28, 1};
  /// The number of classes: the model must end with that many outputs and a softmax, or with one sigmoid output
  /// for two classes (0: not checked).
  int64_t classes = 10;
  /// The classes' names, when the data names them (a CSV's text labels), in class order; else empty.
  std::vector<std::string> class_names;
  /// Regression: the model must end with this many outputs (classes is then 0); 0: a classifier.
  int64_t outputs = 0;
  /// The regression targets' names (the CSV's label columns), one per output; else empty.
  std::vector<std::string> output_names;
  /// The input features' names (a CSV's feature columns, in order), so that new files are matched by name.
  std::vector<std::string> feature_names;
  /// The text feature columns, one-hot encoded: column → its categories, in order (one input each).
  std::map<std::string, std::vector<std::string>> categories;
  float epsilon = 1e-3f;  ///< normalisation epsilon
  uint64_t seed = 1;      ///< initial weights and dropout masks

  /// The norm kind's option `key`: the explicit setting, else the kind's default; throws when the kind has none.
  double norm_option(const std::string& key) const;
  Metadata to_metadata() const;  ///< keys model.description, model.norm, model.input_shape, ..., model.<option>
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
  std::string usage;                  ///< "dense:UNITS" (docs/models.md says what each kind does)
  size_t min_values = 0, max_values = 0;  ///< how many positional values it takes
  std::vector<std::string> option_keys;   ///< the key=value options it takes
  bool takes_images = false;          ///< works on [H, W, C] samples (a model starting with it gets images)
  /// Builds the layer; an empty pointer leaves it out of the model (`bn` when the norm mode is none).
  std::function<std::shared_ptr<Module>(const LayerArgs&)> make;
  /// Works on whatever sample shape reaches it (normalize): a model starting with it gets images or vectors as
  /// the next layer takes them.
  bool any_shape = false;
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

}  // namespace minidl
