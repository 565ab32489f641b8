// The model grammar, the registry of layer kinds with the built-in ones, and the builder. docs/models.md
// documents what is accepted here.
#include "minidl/models.h"

#include "minidl/conv_layers.h"
#include "minidl/internal/text.h"
#include "minidl/normalization.h"
#include "normalization_kinds.h"

#include <cmath>
#include <cstdlib>
#include <mutex>

namespace minidl {
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

std::vector<LayerSpec> parse_model_description(const std::string& description) {
  const auto bad = [&](const LayerSpec& spec, size_t column, const std::string& message) -> Error {
    return Error(detail::concat("model description '", description, "': layer ", spec.position, " '", spec.text,
                                "' (character ", column + 1, "): ", message));
  };
  if (trim(description).empty())
    fail("model description is empty: expected layers separated by commas, e.g. ", kDocumentModel);
  std::vector<LayerSpec> layers;
  size_t column = 0;
  for (const std::string& raw : split(description, ',')) {
    LayerSpec spec;
    spec.position = static_cast<int>(layers.size()) + 1;
    spec.text = trim(raw);
    const size_t at = column + raw.find_first_not_of(" \t\n") * (spec.text.empty() ? 0 : 1);
    column += raw.size() + 1;
    if (spec.text.empty()) throw bad(spec, at, "empty layer (two commas in a row, or one at an end?)");
    const std::vector<std::string> parts = split(spec.text, ':');
    spec.kind = trim(parts[0]);
    const LayerKind* kind = find_kind(spec.kind);
    if (!kind) throw bad(spec, at, "unknown layer kind '" + spec.kind + "': choose one of " + internal::join(kind_names()));
    for (size_t i = 1; i < parts.size(); ++i) {
      const std::string part = trim(parts[i]);
      const size_t eq = part.find('=');
      if (part.empty()) throw bad(spec, at, "empty value after ':' (usage: " + kind->usage + ")");
      if (eq == std::string::npos) {
        if (!spec.options.empty()) throw bad(spec, at, "value '" + part + "' after a key=value option (values come first)");
        spec.values.push_back(part);
        continue;
      }
      const std::string key = trim(part.substr(0, eq)), value = trim(part.substr(eq + 1));
      if (key.empty() || value.empty()) throw bad(spec, at, "option '" + part + "' needs key=value");
      bool known = false;
      for (const std::string& k : kind->option_keys) known = known || k == key;
      if (!known)
        throw bad(spec, at, "unknown option '" + key + "' for " + kind->name + " (usage: " + kind->usage + ")" +
                                (kind->option_keys.empty() ? "" : "; its options: " + internal::join(kind->option_keys)));
      for (const auto& [k, v] : spec.options)
        if (k == key) throw bad(spec, at, "option '" + key + "' given twice");
      spec.options.emplace_back(key, value);
    }
    if (spec.values.size() < kind->min_values || spec.values.size() > kind->max_values)
      throw bad(spec, at, kind->name + " takes " +
                              (kind->min_values == kind->max_values ? std::to_string(kind->min_values)
                                                                    : std::to_string(kind->min_values) + " to " +
                                                                          std::to_string(kind->max_values)) +
                              " value(s), got " + std::to_string(spec.values.size()) + " (usage: " + kind->usage + ")");
    spec.kind = kind->name;
    layers.push_back(std::move(spec));
  }
  return layers;
}

std::string canonical_description(const std::string& description) {
  std::string out;
  for (const LayerSpec& spec : parse_model_description(description)) {
    if (!out.empty()) out += ',';
    out += spec.kind;
    for (const std::string& v : spec.values) out += ':' + v;
    for (const auto& [k, v] : spec.options) out += ':' + k + '=' + v;
  }
  return out;
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
  // The input form is the first layer's that cares: images for convolution and pooling, else vectors.
  bool images = false;
  for (const LayerSpec& spec : layers)
    if (const LayerKind* kind = find_kind(spec.kind); !kind->any_shape) {
      images = kind->takes_images;
      break;
    }
  Shape sample = images ? config.input_shape : Shape{config.input_shape.numel()};
  model->set_input_shape(sample);
  for (const LayerSpec& spec : layers) {
    try {
      const std::shared_ptr<Module> layer = find_kind(spec.kind)->make(LayerArgs(spec, sample, config, gen));
      if (!layer) continue;
      model->add(layer);
      const Shape out = layer->output_shape(with_batch(sample));
      sample = Shape(std::span<const int64_t>(out.begin() + 1, out.end()));
    } catch (const Error& e) {
      fail(where, ": layer ", spec.position, " '", spec.text, "' on input ", sample.str(), ": ", e.what());
    }
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
