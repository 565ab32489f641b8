// The registry of layer kinds with the built-in ones, and the builder (residual blocks and their shortcuts
// included). model_grammar.cpp parses descriptions; docs/models.md documents what is accepted.
#include "minidl/models.h"

#include "minidl/conv_layers.h"
#include "minidl/internal/text.h"
#include "minidl/normalization.h"
#include "minidl/residual.h"
#include "layer_registry.h"
#include "normalization_kinds.h"

#include <cmath>
#include <cstdlib>
#include <functional>
#include <mutex>

namespace minidl {
using registry::find_kind;
using registry::kind_names;
namespace {
using internal::split;
using internal::trim;


Shape with_batch(const Shape& sample) {
  Shape s{1};
  for (int64_t d : sample) s.push_back(d);
  return s;
}

std::vector<LayerKind> builtin_kinds();

// "3" → {3, 3}, "3x5" → {3, 5}: a window or stride, height by width.
std::array<int64_t, 2> pair_of(const LayerArgs& a, const std::string& text, const char* what) {
  const std::vector<std::string> parts = split(text, 'x');
  std::array<int64_t, 2> out{};
  for (size_t i = 0; i < 2; ++i) {
    const std::string& p = parts[std::min(i, parts.size() - 1)];
    const int64_t v = internal::parse_integer(p).value_or(0);
    if (parts.size() > 2 || v < 1 || v > 4096)
      a.fail(std::string(what) + " must be N or HxW with whole numbers in [1, 4096], got '" + text + "'");
    out[i] = v;
  }
  return out;
}

Padding padding_of(const LayerArgs& a) {
  const std::string p = a.option("padding").value_or("valid");
  if (p != "valid" && p != "same") a.fail("padding must be valid or same, got '" + p + "'");
  return p == "same" ? Padding::same : Padding::valid;
}

// Convolution and pooling take images: [H, W, C] per sample.
void require_images(const LayerArgs& a) {
  if (a.input.rank() != 3)
    a.fail(a.spec.kind + " takes images [height, width, channels], but its input is " + a.input.str() +
           " per sample — convolution and pooling go before flatten, on image data");
}

std::shared_ptr<Module> make_pooling(const LayerArgs& a, Pooling2D::Kind kind) {
  require_images(a);
  const auto pool = pair_of(a, a.spec.values[0], "pool size");
  const auto strides = a.option("strides") ? pair_of(a, *a.option("strides"), "strides") : pool;
  return std::make_shared<Pooling2D>(kind, pool, strides, padding_of(a));
}

std::mutex g_kinds_mutex;
std::vector<LayerKind>& kinds() {
  static std::vector<LayerKind> registry = builtin_kinds();
  return registry;
}

// The built-in kinds. Adding a kind is one more entry here (or a register_layer_kind call elsewhere).
std::vector<LayerKind> builtin_kinds() {
  std::vector<LayerKind> k;
  k.push_back({"dense", {}, "dense:UNITS", 1, 1, {}, false,
               [](const LayerArgs& a) -> std::shared_ptr<Module> {
                 const int64_t units = a.integer(0, "units", 1, int64_t{1} << 24);
                 if (a.input.rank() != 1)
                   a.fail("dense takes one vector per sample, but its input is " + a.input.str() + " per sample — add flatten before it");
                 return std::make_shared<Dense>(a.input[0], units, Activation::none, a.gen);
               }});
  k.push_back({"relu", {"re_lu"}, "relu", 0, 0, {}, false,
               [](const LayerArgs&) -> std::shared_ptr<Module> { return std::make_shared<ReLU>(); }});
  k.push_back({"softmax", {}, "softmax", 0, 0, {}, false,
               [](const LayerArgs&) -> std::shared_ptr<Module> { return std::make_shared<Softmax>(); }});
  k.push_back({"sigmoid", {}, "sigmoid", 0, 0, {}, false,
               [](const LayerArgs&) -> std::shared_ptr<Module> { return std::make_shared<Sigmoid>(); }});
  k.push_back({"tanh", {}, "tanh", 0, 0, {}, false,
               [](const LayerArgs&) -> std::shared_ptr<Module> { return std::make_shared<Tanh>(); }});
  k.push_back({"gelu", {}, "gelu", 0, 0, {}, false,
               [](const LayerArgs&) -> std::shared_ptr<Module> { return std::make_shared<GELU>(); }});
  k.push_back({"silu", {"swish"}, "silu", 0, 0, {}, false,
               [](const LayerArgs&) -> std::shared_ptr<Module> { return std::make_shared<SiLU>(); }});
  k.push_back({"leaky_relu", {"leaky_re_lu"}, "leaky_relu[:alpha=A]", 0, 0, {"alpha"}, false,
               [](const LayerArgs& a) -> std::shared_ptr<Module> {
                 return std::make_shared<LeakyReLU>(static_cast<float>(a.option_number("alpha", 0.3, 0.0, 1e6)));
               }});
  k.push_back({"dropout", {}, "dropout:RATE",
               1, 1, {}, false, [](const LayerArgs& a) -> std::shared_ptr<Module> {
                 const float rate = static_cast<float>(a.number(0, "rate", 0.0, 1.0, true));
                 return std::make_shared<Dropout>(rate, a.gen.next_u64());
               }});
  for (LayerKind& n : normalization_kinds()) k.push_back(std::move(n));
  k.push_back({"normalize", {"normalization"}, "normalize", 0, 0, {}, false,
               [](const LayerArgs& a) -> std::shared_ptr<Module> {
                 return std::make_shared<FeatureNormalization>(a.input[a.input.rank() - 1]);
               },
               true});
  k.push_back({"conv", {"conv2d"}, "conv:FILTERSxK[xK2][:strides=S[xS2]][:padding=valid|same][:bias=1|0]", 1, 1,
               {"strides", "padding", "bias"}, true, [](const LayerArgs& a) -> std::shared_ptr<Module> {
                 require_images(a);
                 const std::vector<std::string> parts = split(a.spec.values[0], 'x');
                 if (parts.size() < 2 || parts.size() > 3) a.fail("expected FILTERSxK or FILTERSxKxK2, got '" + a.spec.values[0] + "'");
                 const int64_t filters = internal::parse_integer(parts[0]).value_or(0);
                 if (filters < 1 || filters > (1 << 16))
                   a.fail("filters must be a whole number in [1, 65536], got '" + parts[0] + "'");
                 const auto kernel = pair_of(a, parts.size() == 2 ? parts[1] : parts[1] + "x" + parts[2], "kernel size");
                 const std::string bias = a.option("bias").value_or("1");
                 if (bias != "0" && bias != "1") a.fail("bias must be 1 or 0, got '" + bias + "'");
                 const Conv2DOptions options{a.option("strides") ? pair_of(a, *a.option("strides"), "strides")
                                                                 : std::array<int64_t, 2>{1, 1},
                                             padding_of(a), bias == "1"};
                 // The window is checked against the input before the kernel is allocated (a 4096x4096 window
                 // would take gigabytes first).
                 window2d("conv2d", Shape{1, a.input[0], a.input[1], a.input[2]}, kernel, options.strides, options.padding);
                 return std::make_shared<Conv2D>(a.input[2], filters, kernel, options, a.gen);
               }});
  k.push_back({"maxpool", {"max_pooling2d"}, "maxpool:P[xP2][:strides=S[xS2]][:padding=valid|same]", 1, 1, {"strides", "padding"},
               true, [](const LayerArgs& a) { return make_pooling(a, Pooling2D::Kind::max); }});
  k.push_back({"avgpool", {"average_pooling2d"}, "avgpool:P[xP2][:strides=S[xS2]][:padding=valid|same]", 1, 1, {"strides", "padding"},
               true, [](const LayerArgs& a) { return make_pooling(a, Pooling2D::Kind::average); }});
  k.push_back({"gap", {"global_average_pooling2d"}, "gap",
               0, 0, {}, true, [](const LayerArgs& a) -> std::shared_ptr<Module> {
                 require_images(a);
                 return std::make_shared<GlobalAveragePooling2D>();
               }});
  k.push_back({"flatten", {}, "flatten", 0, 0, {}, true,
               [](const LayerArgs&) -> std::shared_ptr<Module> { return std::make_shared<Flatten>(); }});
  return k;
}
}  // namespace

namespace registry {
const LayerKind* find_kind(const std::string& name) {
  for (const LayerKind& k : kinds()) {
    if (k.name == name) return &k;
    for (const std::string& alias : k.aliases)
      if (alias == name) return &k;
  }
  return nullptr;
}

std::vector<std::string> kind_names() {
  std::vector<std::string> names;
  for (const LayerKind& k : kinds()) names.push_back(k.name);
  return names;
}

}  // namespace registry

std::string document_model_description(int64_t hidden, int64_t classes) {
  return "dense:" + std::to_string(hidden) + ",relu,bn,dense:" + std::to_string(classes) + ",softmax";
}

std::string regression_model_description(int64_t hidden, int64_t outputs) {
  return "dense:" + std::to_string(hidden) + ",relu,bn,dense:" + std::to_string(outputs);
}

Loss default_loss_of(const std::string& description) {
  const std::string last = parse_model_description(description).back().kind;
  return last == "softmax" ? Loss::categorical_crossentropy : last == "sigmoid" ? Loss::binary_crossentropy : Loss::mse;
}

int64_t LayerArgs::integer(size_t index, const char* what, int64_t min, int64_t max) const {
  const std::string& s = spec.values.at(index);
  const std::optional<int64_t> v = internal::parse_integer(s);
  if (!v || *v < min || *v > max)
    fail(std::string(what) + " must be a whole number in [" + std::to_string(min) + ", " + std::to_string(max) +
         "], got '" + s + "'");
  return *v;
}

double LayerArgs::number(size_t index, const char* what, double min, double max, bool open_max) const {
  const std::string& s = spec.values.at(index);
  const double v = internal::parse_number(s);
  if (!(v >= min) || !(open_max ? v < max : v <= max))
    fail(std::string(what) + " must be a number in [" + exact_text(min) + ", " + exact_text(max) + (open_max ? ")" : "]") +
         ", got '" + s + "'");
  return v;
}

std::optional<std::string> LayerArgs::option(const std::string& key) const {
  for (const auto& [k, v] : spec.options)
    if (k == key) return v;
  return std::nullopt;
}

double LayerArgs::option_number(const std::string& key, double fallback, double min, double max) const {
  const auto text = option(key);
  if (!text) return fallback;
  const double v = internal::parse_number(*text);
  if (!(v >= min && v <= max))
    fail("option " + key + " must be a number in [" + exact_text(min) + ", " + exact_text(max) + "], got '" + *text + "'");
  return v;
}

int64_t LayerArgs::option_integer(const std::string& key, int64_t fallback, int64_t min, int64_t max) const {
  const auto text = option(key);
  if (!text) return fallback;
  const std::optional<int64_t> v = internal::parse_integer(*text);
  if (!v || *v < min || *v > max)
    fail("option " + key + " must be a whole number in [" + std::to_string(min) + ", " + std::to_string(max) +
         "], got '" + *text + "'");
  return *v;
}

void LayerArgs::fail(const std::string& message) const { throw Error(message); }

void register_layer_kind(LayerKind kind) {
  const std::lock_guard lock(g_kinds_mutex);
  if (kind.name.empty() || !kind.make) fail("register_layer_kind: a kind needs a name and a make function");
  std::vector<std::string> names = kind.aliases;
  names.push_back(kind.name);
  for (const std::string& n : names) {
    if (n.empty() || n.find_first_of(",:= \t") != std::string::npos)
      fail("register_layer_kind: bad name '", n, "' (no commas, colons, '=' or blanks)");
    if (find_kind(n)) fail("register_layer_kind: '", n, "' is already a layer kind");
  }
  kinds().push_back(std::move(kind));
}

const std::vector<LayerKind>& layer_kinds() { return kinds(); }

namespace {
// Whether the first layer that cares takes images (convolution, pooling) or vectors; empty when none cares.
std::optional<bool> takes_images(const std::vector<LayerSpec>& layers) {
  for (const LayerSpec& spec : layers) {
    if (spec.kind == "residual") {
      if (const std::optional<bool> inner = takes_images(spec.layers)) return inner;
      continue;
    }
    if (const LayerKind* kind = find_kind(spec.kind); !kind->any_shape) return kind->takes_images;
  }
  return std::nullopt;
}

Shape sample_of(const Shape& batch) { return Shape(std::span<const int64_t>(batch.begin() + 1, batch.end())); }

std::shared_ptr<Module> build_residual(const LayerSpec& spec, const Shape& input, const ModelConfig& config, Generator& gen);

// The layers of a list in order, `sample` updated to the shape after them; an error names the layer.
std::vector<std::shared_ptr<Module>> build_layers(const std::vector<LayerSpec>& specs, Shape& sample,
                                                  const ModelConfig& config, Generator& gen) {
  std::vector<std::shared_ptr<Module>> out;
  for (const LayerSpec& spec : specs) {
    try {
      const std::shared_ptr<Module> layer = spec.kind == "residual" ? build_residual(spec, sample, config, gen)
                                                                     : find_kind(spec.kind)->make(LayerArgs(spec, sample, config, gen));
      if (!layer) continue;
      sample = sample_of(layer->output_shape(with_batch(sample)));
      out.push_back(layer);
    } catch (const Error& e) {
      fail("layer ", spec.position, " '", spec.text, "' on input ", sample.str(), ": ", e.what());
    }
  }
  return out;
}

// The first normalisation layer of a block (not inside a nested block): its kind is the projection's.
const LayerSpec* block_norm(const std::vector<LayerSpec>& layers) {
  for (const LayerSpec& spec : layers)
    if (spec.kind == "bn") return &spec;
  return nullptr;
}

// residual(LAYERS): LAYERS(x) + x when the shapes match, else + a projection of x — a 1×1 convolution with the
// block's stride (images) or a Dense (vectors), then the block's first normalisation layer (ResNet's option B).
std::shared_ptr<Module> build_residual(const LayerSpec& spec, const Shape& input, const ModelConfig& config, Generator& gen) {
  Shape out = input;
  std::vector<std::shared_ptr<Module>> body = build_layers(spec.layers, out, config, gen);
  if (body.empty()) fail("the block has no layer left (its only layers are bn with --norm none)");
  std::vector<std::shared_ptr<Module>> shortcut;
  if (!(out == input)) {
    // The block's normalisation after the projection (none with --norm none: then the projection keeps its bias).
    std::vector<std::shared_ptr<Module>> norm;
    if (const LayerSpec* spec_of_norm = block_norm(spec.layers)) {
      Shape after_projection = out;
      norm = build_layers({*spec_of_norm}, after_projection, config, gen);
    }
    if (input.rank() == 3 && out.rank() == 3) {
      const int64_t stride = (input[0] + out[0] - 1) / out[0];
      const Conv2DOptions options{{stride, stride}, Padding::valid, norm.empty()};
      const Window2d w = window2d("conv2d", Shape{1, input[0], input[1], input[2]}, {1, 1}, options.strides, options.padding);
      if (!(w.out_h == out[0] && w.out_w == out[1]))
        fail("the block turns ", input.str(), " into ", out.str(), ", which a 1x1 convolution with one stride cannot "
             "project (its shortcut): make the block keep the image's size or divide it by a whole number");
      shortcut.push_back(std::make_shared<Conv2D>(input[2], out[2], std::array<int64_t, 2>{1, 1}, options, gen));
    } else if (input.rank() == 1 && out.rank() == 1) {
      shortcut.push_back(std::make_shared<Dense>(input[0], out[0], Activation::none, gen));  // Dense keeps its bias
    } else {
      fail("the block turns ", input.str(), " into ", out.str(), ": a shortcut projects images to images (1x1 "
           "convolution) or vectors to vectors (dense), so flatten or pool outside the block");
    }
    shortcut.insert(shortcut.end(), norm.begin(), norm.end());
  }
  return std::make_shared<Residual>(std::move(body), std::move(shortcut));
}
}  // namespace

std::shared_ptr<Sequential> build_model(const ModelConfig& config) {
  Generator gen(config.seed);
  return build_model(config, gen);
}

std::shared_ptr<Sequential> build_model(const ModelConfig& config, Generator& gen) {
  const std::vector<LayerSpec> layers = parse_model_description(config.description);
  const std::string where = "model '" + config.description + "'";
  if (config.input_shape.rank() == 0 || config.input_shape.numel() <= 0)
    fail(where, ": bad input shape ", config.input_shape.str());
  auto model = std::make_shared<Sequential>();
  Shape sample = takes_images(layers).value_or(false) ? config.input_shape : Shape{config.input_shape.numel()};
  model->set_input_shape(sample);
  try {
    for (const std::shared_ptr<Module>& layer : build_layers(layers, sample, config, gen)) model->add(layer);
  } catch (const Error& e) {
    fail(where, ": ", e.what());
  }
  const Module* last = model->children().empty() ? nullptr : model->children().back().get();
  if (config.outputs > 0) {
    if (!(sample == Shape{config.outputs}))
      fail(where, " ends with output ", sample.str(), " per sample but the data has ", config.outputs, " target",
           config.outputs == 1 ? "" : "s", " to predict: end it with dense:", config.outputs);
  } else if (config.classes > 0 && dynamic_cast<const Sigmoid*>(last)) {
    if (config.classes > 2 || !(sample == Shape{1}))
      fail(where, " ends with a sigmoid of output ", sample.str(), " per sample: a sigmoid output scores one class "
           "against the other (binary cross-entropy), so it takes one unit and two classes, and the data has ",
           config.classes, " — end it with dense:1,sigmoid for two classes, or dense:", config.classes, ",softmax");
  } else if (config.classes > 0) {
    if (!(sample == Shape{config.classes}))
      fail(where, " ends with output ", sample.str(), " per sample but the data has ", config.classes,
           " classes: end it with dense:", config.classes, ",softmax");
    const auto* dense = dynamic_cast<const Dense*>(last);
    if (!dynamic_cast<const Softmax*>(last) && !(dense && dense->activation() == Activation::softmax))
      fail(where, " must end with softmax: minidl trains classifiers with categorical cross-entropy on "
                  "probabilities, as Keras's loss='categorical_crossentropy' (add ',softmax'; for regression on "
                  "float targets, --loss mse)");
  }
  return model;
}

}  // namespace minidl
