// The registry of normalisation kinds with the built-in ones (what each `bn` of a description becomes), and the
// grammar's normalisation layer kinds: bn with its ghost and renorm options, layernorm, groupnorm and rmsnorm.
// docs/models.md and docs/normalization.md describe them.
#include "normalization_kinds.h"

#include <cmath>
#include <mutex>

#include "minidl/internal/text.h"
#include "minidl/normalization.h"

namespace minidl {
namespace {
constexpr double kKerasMomentum = 0.99;  // BatchNormalization's momentum and renorm_momentum

NormOption momentum_option(double fallback) {
  return {"momentum", "momentum",
          "BatchNormalization momentum, Keras convention: the weight on the old moving value", fallback, 0.0, 1.0};
}

// A BatchNormalization as the kind and the layer's own options say; `renorm` is the kind's default.
std::shared_ptr<Module> make_batch_norm(const NormArgs& n, bool renorm) {
  const LayerArgs& a = n.layer;
  const BatchNormalizationOptions keras;  // the layer's own defaults, for an option the kind does not have
  BatchNormalizationOptions o{.momentum = static_cast<float>(n.option("momentum", keras.momentum)), .epsilon = n.epsilon};
  o.virtual_batch_size = static_cast<int64_t>(n.option("virtual_batch_size", static_cast<double>(keras.virtual_batch_size)));
  const std::string text = a.option("renorm").value_or(renorm ? "1" : "0");
  if (text != "0" && text != "1") a.fail("renorm must be 1 or 0, got '" + text + "'");
  o.renorm = text == "1";
  o.renorm_momentum = static_cast<float>(n.option("renorm_momentum", keras.renorm_momentum));
  o.rmax = static_cast<float>(n.option("rmax"));
  o.rmin = static_cast<float>(n.option("rmin"));
  o.dmax = static_cast<float>(n.option("dmax"));
  o.freeze_epochs = static_cast<int64_t>(n.option("freeze_epochs", static_cast<double>(keras.freeze_epochs)));
  return std::make_shared<BatchNormalization>(n.channels, o);
}

std::string torch_batch_norm(const NormArgs& n) { return "batch_norm:" + exact_text(1.0 - n.option("momentum")); }

float epsilon_of(const LayerArgs& a) {
  return static_cast<float>(a.option_number("epsilon", a.config.epsilon, 1e-12, 1e3));
}

int64_t channels_of(const LayerArgs& a) { return a.input[a.input.rank() - 1]; }

int64_t checked_groups(const LayerArgs& a, int64_t channels, int64_t groups, const char* hint) {
  if (channels % groups != 0)
    a.fail(std::to_string(groups) + " groups do not divide the " + std::to_string(channels) + " channels: choose a divisor of " +
           std::to_string(channels) + hint);
  return groups;
}

std::vector<NormKind> builtin_norm_kinds() {
  const auto batch_norm = [](bool renorm) {
    return [renorm](const NormArgs& n) { return make_batch_norm(n, renorm); };
  };
  const NormOption virtual_batch_size{"virtual_batch_size", "virtual-batch-size", "ghost mode: samples per ghost batch",
                                      8, 1, double(int64_t{1} << 20), true};
  const NormOption groups{"groups", "groups", "group mode: groups of channels (Keras's default)",
                          static_cast<double>(GroupNormalization::kDefaultGroups), 1,
                          double(int64_t{1} << 24), true};
  const char* clipping = "renorm mode: clip r to [rmin, rmax] and d to [-dmax, dmax], e.g. rmax=3,rmin=0.3333,dmax=5 "
                         "(default: unclipped)";
  std::vector<NormKind> k;
  k.push_back({"running", "Keras BatchNormalization(): batch statistics in training, moving statistics (momentum 0.99) "
               "in inference — the document's Example 1", true, {momentum_option(kKerasMomentum)}, batch_norm(false),
               torch_batch_norm});
  k.push_back({"batchwise", "BatchNormalization(momentum=0): the moving statistics are the last training batch's "
               "(Example 2)", true, {momentum_option(0.0)}, batch_norm(false), torch_batch_norm});
  k.push_back({"manual", "tf.nn.moments + tf.nn.batch_normalization: batch statistics always, none kept (Example 3)",
               false, {},
               [](const NormArgs& n) -> std::shared_ptr<Module> {
                 return std::make_shared<MomentsNormalization>(n.channels, n.epsilon);
               },
               [](const NormArgs&) { return std::string("moments"); }});
  k.push_back({"none", "no normalisation: each bn is left out (the baseline)", false, {},
               [](const NormArgs&) -> std::shared_ptr<Module> { return nullptr; },
               [](const NormArgs&) { return std::string("identity"); }});
  k.push_back({"ghost", "BatchNormalization(virtual_batch_size=V): each training batch normalised in ghost batches of V",
               true, {momentum_option(kKerasMomentum), virtual_batch_size}, batch_norm(false), nullptr});
  k.push_back({"renorm", "BatchNormalization(renorm=True): batch renormalisation (Ioffe 2017)", true,
               {momentum_option(kKerasMomentum),
                {"renorm_momentum", "renorm-momentum", "renorm mode: momentum of renorm's moving mean and stddev", kKerasMomentum, 0, 1},
                {"rmax", "renorm-clipping", clipping, NAN, 1, INFINITY},
                {"rmin", "renorm-clipping", clipping, NAN, 0, 1, false, true},
                {"dmax", "renorm-clipping", clipping, NAN, 0, INFINITY}},
               batch_norm(true), nullptr});
  k.push_back({"layer", "Keras LayerNormalization: each sample over its features", false, {},
               [](const NormArgs& n) -> std::shared_ptr<Module> {
                 return std::make_shared<LayerNormalization>(n.channels, n.epsilon);
               },
               [](const NormArgs&) { return std::string("layer_norm"); }});
  k.push_back({"group", "Keras GroupNormalization: each sample over groups of channels", false, {groups},
               [](const NormArgs& n) -> std::shared_ptr<Module> {
                 const int64_t g = checked_groups(n.layer, n.channels, static_cast<int64_t>(n.option("groups")), " (--groups)");
                 return std::make_shared<GroupNormalization>(n.channels, g, n.epsilon);
               },
               [](const NormArgs& n) { return "group_norm:" + std::to_string(static_cast<int64_t>(n.option("groups"))); }});
  k.push_back({"frozen", "running, with the moving statistics frozen for the last epochs (Wu & Johnson's FrozenBN)", true,
               {momentum_option(kKerasMomentum),
                {"freeze_epochs", "freeze-epochs", "frozen mode: freeze the moving statistics for this many last epochs",
                 1, 0, double(1 << 30), true}},
               batch_norm(false), nullptr});
  k.push_back({"rms", "Keras RMSNormalization: each sample over its features by its root mean square, no centring",
               false, {},
               [](const NormArgs& n) -> std::shared_ptr<Module> {
                 return std::make_shared<RMSNormalization>(n.channels, n.epsilon);
               },
               nullptr});
  return k;
}

std::mutex g_norm_kinds_mutex;
std::vector<NormKind>& registry() {
  static std::vector<NormKind> kinds = builtin_norm_kinds();
  return kinds;
}
}  // namespace

void NormOption::check(double value, const std::string& where) const {
  const bool low = open_min ? !(value > min) : !(value >= min);
  if (!low && std::isfinite(value) && value <= max && (!integer || value == std::floor(value))) return;
  const std::string what = integer ? "a whole number" : "a number";
  if (std::isinf(max))
    fail(where, " must be ", integer ? "a whole number " : "", open_min ? "> " : ">= ", exact_text(min), ", got ",
         exact_text(value));
  fail(where, " must be ", what, " in ", range(), ", got ", exact_text(value));
}

std::string NormOption::range() const {
  const auto text = [&](double v) { return integer ? std::to_string(static_cast<int64_t>(v)) : exact_text(v); };
  return (open_min ? "(" : "[") + text(min) + ", " + text(max) + "]";
}

const NormOption* NormKind::option(const std::string& key) const {
  for (const NormOption& o : options)
    if (o.key == key) return &o;
  return nullptr;
}

double NormArgs::option(const std::string& key, double fallback) const {
  const double base = norm_kind(layer.config.norm).option(key) ? layer.config.norm_option(key) : fallback;
  const auto text = layer.option(key);
  if (!text) return base;
  for (const NormOption& o : all_norm_options())
    if (o.key == key) {
      const double v = internal::parse_number(*text);
      if (std::isnan(v))
        layer.fail("option " + key + " must be " + (o.integer ? "a whole number" : "a number") + " in " + o.range() +
                   ", got '" + *text + "'");
      try {
        o.check(v, "option " + key);
      } catch (const Error& e) {
        layer.fail(e.what());
      }
      return v;
    }
  return layer.option_number(key, base, -1e30, 1e30);
}

void register_norm_kind(NormKind kind) {
  const std::lock_guard lock(g_norm_kinds_mutex);
  if (kind.name.empty() || !kind.make) fail("register_norm_kind: a kind needs a name and a make function");
  for (const NormKind& k : registry())
    if (k.name == kind.name) fail("register_norm_kind: '", kind.name, "' is already a normalisation kind");
  for (size_t i = 0; i < kind.options.size(); ++i)
    for (size_t j = 0; j < i; ++j)
      if (kind.options[i].key == kind.options[j].key)
        fail("register_norm_kind: '", kind.name, "' has option '", kind.options[i].key, "' twice");
  registry().push_back(std::move(kind));
}

const std::vector<NormKind>& norm_kinds() { return registry(); }

const NormKind& norm_kind(const std::string& name) {
  for (const NormKind& k : registry())
    if (k.name == name) return k;
  fail("unknown normalisation mode '", name, "': choose one of ", norm_kind_names());
}

std::string norm_kind_names() {
  std::vector<std::string> names;
  for (const NormKind& k : registry()) names.push_back(k.name);
  return internal::join(names, ", ");
}

std::vector<NormOption> all_norm_options() {
  std::vector<NormOption> out;
  for (const NormKind& k : registry())
    for (const NormOption& o : k.options) {
      bool seen = false;
      for (const NormOption& e : out) seen = seen || e.key == o.key;
      if (!seen) out.push_back(o);
    }
  return out;
}

double ModelConfig::norm_option(const std::string& key) const {
  const NormOption* o = norm_kind(norm).option(key);
  if (!o) fail("normalisation kind '", norm, "' has no option '", key, "'");
  const auto it = norm_options.find(key);
  return it == norm_options.end() ? o->fallback : it->second;
}

std::vector<LayerKind> normalization_kinds() {
  std::vector<LayerKind> k;
  k.push_back({"bn", {"batch_normalization", "batchnorm"},
               "bn[:momentum=M][:epsilon=E][:virtual_batch_size=V][:renorm=1][:renorm_momentum=M][:rmax=R][:rmin=R][:dmax=D]", 0, 0,
               {"momentum", "epsilon", "virtual_batch_size", "renorm", "renorm_momentum", "rmax", "rmin", "dmax"}, false,
               [](const LayerArgs& a) -> std::shared_ptr<Module> {
                 return norm_kind(a.config.norm).make(NormArgs{a, channels_of(a), epsilon_of(a)});
               }});
  k.push_back({"layernorm", {"layer_normalization"}, "layernorm[:epsilon=E]", 0, 0, {"epsilon"}, false,
               [](const LayerArgs& a) -> std::shared_ptr<Module> {
                 return std::make_shared<LayerNormalization>(channels_of(a), epsilon_of(a));
               }});
  k.push_back({"groupnorm", {"group_normalization"}, "groupnorm[:GROUPS][:epsilon=E]", 0, 1,
               {"epsilon"}, false, [](const LayerArgs& a) -> std::shared_ptr<Module> {
                 const int64_t channels = channels_of(a);
                 const int64_t groups =
                     a.spec.values.empty() ? GroupNormalization::kDefaultGroups : a.integer(0, "groups", 1, int64_t{1} << 24);
                 return std::make_shared<GroupNormalization>(channels, checked_groups(a, channels, groups, ""), epsilon_of(a));
               }});
  k.push_back({"rmsnorm", {"rms_normalization"}, "rmsnorm[:epsilon=E]", 0, 0,
               {"epsilon"}, false, [](const LayerArgs& a) -> std::shared_ptr<Module> {
                 // The layer written out keeps Keras's own default epsilon, 1e-6 (--norm rms takes the model's).
                 return std::make_shared<RMSNormalization>(channels_of(a), a.option_number("epsilon", 1e-6, 1e-12, 1e3));
               }});
  return k;
}

}  // namespace minidl
