// Model files: checkpoints that describe their model, loading them back, and upgrading minidl 0.1's format.
#include <cstdio>

#include "minidl/checkpoint.h"
#include "minidl/normalization.h"
#include "minidl/optim.h"

namespace minidl {
namespace {
constexpr const char* kFormat1 = "minidl-checkpoint-1";

std::string source_of(const std::string& path) { return "checkpoint '" + path + "'"; }

// minidl 0.1 wrote the document's model only, its settings under flat keys, and optimizer slots by position
// ("optimizer/m/0"): rename them after the parameters, in the order the model lists them.
void upgrade_from_format_1(Checkpoint& c, const std::string& path) {
  const MetadataReader old(c.metadata, source_of(path));
  ModelConfig model;
  const NormKind* kind = nullptr;
  try {
    kind = &norm_kind(old.text("mode"));
  } catch (const Error& e) {
    old.fail_at("mode", e.what());
  }
  model.norm = kind->name;
  model.description = document_model_description(old.integer("hidden", 1, int64_t{1} << 24), 10);
  model.input_shape = {28, 28, 1};
  model.classes = 10;
  const double momentum = old.number("momentum", 0.0, 1.0);
  if (kind->option("momentum")) model.norm_options["momentum"] = static_cast<float>(momentum);
  model.epsilon = static_cast<float>(old.number("epsilon", 1e-12, 1e3));
  model.seed = static_cast<uint64_t>(old.integer("seed", 0, INT64_MAX));
  Metadata m = model.to_metadata();
  m["format"] = kCheckpointFormat;
  const auto copy = [&](const char* from, const char* to) {
    if (old.has(from)) m[to] = old.text(from);
  };
  copy("step", "trainer.step");
  copy("epochs", "trainer.epochs");
  copy("eval_batch_size", "trainer.validation_batch_size");
  copy("batch_size", "loader.batch_size");
  copy("shuffle", "loader.shuffle");
  copy("seed", "loader.seed");
  copy("loader_epoch", "loader.epoch");
  copy("loader_next_batch", "loader.next_batch");
  copy("loader_epoch_rng", "loader.epoch_rng");
  copy("loader_rng", "loader.rng");
  m["loader.drop_last"] = "0";
  const float learning_rate = static_cast<float>(old.number("learning_rate", 0.0, 1e6));
  const Tensor dummy = Tensor::zeros({1}).set_requires_grad();
  for (const auto& [key, value] : Adam({dummy}, {.learning_rate = learning_rate}).config()) m[key] = value;

  std::vector<std::string> names;
  for (const auto& [name, t] : build_model_for(model, c, path)->named_parameters(true)) names.push_back(name);
  std::map<std::string, Tensor> tensors;
  for (auto& [name, t] : c.tensors) {
    const std::string prefix = kOptimizerStatePrefix;
    if (name.rfind(prefix, 0) != 0) {
      tensors[name] = t;
      continue;
    }
    // optimizer/<slot>/<index>
    const size_t slash = name.rfind('/');
    const std::string index_text = name.substr(slash + 1);
    char* end = nullptr;
    const unsigned long index = std::strtoul(index_text.c_str(), &end, 10);
    if (slash <= prefix.size() || index_text.empty() || *end != '\0' || index >= names.size())
      fail(source_of(path), ": optimizer slot '", name, "' does not name one of the model's ", names.size(),
           " parameters by position");
    tensors[name.substr(0, slash + 1) + names[index]] = t;
  }
  c.tensors = std::move(tensors);
  c.metadata = std::move(m);
}
}  // namespace

void upgrade_checkpoint(Checkpoint& checkpoint, const std::string& path) {
  const auto it = checkpoint.metadata.find("format");
  if (it == checkpoint.metadata.end())
    fail(source_of(path), ": metadata lacks 'format': not a minidl checkpoint (plain weights load into a model you "
                          "build with Module::load_state)");
  if (it->second == kCheckpointFormat) return;
  if (it->second != kFormat1)
    fail(source_of(path), ": format '", it->second, "' is not one this version reads (", kCheckpointFormat, " or ",
         kFormat1, ")");
  upgrade_from_format_1(checkpoint, path);
}

namespace {
// Every module under `m` (itself included), depth first, as "name (Type)": two models with the same list are
// built alike.
void layers_of(const Module& m, std::vector<std::string>& out) {
  out.push_back(m.name() + " (" + m.type_name() + ")");
  for (const auto& child : m.children()) layers_of(*child, out);
}

// Throws unless `config` builds a model of `model`'s layers, names and tensor shapes: a description that does not
// describe the model would write a file that loads as another model (relu for tanh has the same weights).
void check_describes(const Module& model, const ModelConfig& config, const std::string& path) {
  std::shared_ptr<Sequential> built;
  try {
    built = build_model(config);
  } catch (const Error& e) {
    fail("save_model '", path, "': the configuration does not build: ", e.what());
  }
  std::vector<std::string> mine, theirs;
  layers_of(model, mine);
  layers_of(*built, theirs);
  mine.erase(mine.begin()), theirs.erase(theirs.begin());  // the containers themselves may be named apart
  for (size_t i = 0; i < std::max(mine.size(), theirs.size()); ++i)
    if (i >= mine.size() || i >= theirs.size() || mine[i] != theirs[i])
      fail("save_model '", path, "': the description '", config.description, "' does not describe the model: at layer ",
           i + 1, " the model has ", i < mine.size() ? mine[i] : "no more layers", " and the description builds ",
           i < theirs.size() ? theirs[i] : "no more layers");
  const NamedTensors a = model.state(), b = built->state();
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i)
    if (a[i].first != b[i].first || !(a[i].second.shape() == b[i].second.shape()))
      fail("save_model '", path, "': the description '", config.description, "' builds ", b[i].first, " ",
           b[i].second.shape().str(), " where the model holds ", a[i].first, " ", a[i].second.shape().str());
  if (a.size() != b.size())
    fail("save_model '", path, "': the model holds ", a.size(), " tensors and its description builds ", b.size());
}
}  // namespace

void save_model(const std::string& path, const Module& model, const ModelConfig& config, const Metadata& extra) {
  check_describes(model, config, path);
  Metadata m = extra;
  for (const auto& [key, value] : config.to_metadata()) m[key] = value;
  m["format"] = kCheckpointFormat;
  save_safetensors(path, model.state(), m);
}

std::shared_ptr<Sequential> build_model_for(const ModelConfig& config, const Checkpoint& checkpoint, const std::string& path) {
  int64_t floats = 0;
  for (const auto& [name, t] : checkpoint.tensors) floats += t.numel();
  // Building allocates the model's state and nothing else: at most what the file holds, and a little to spare.
  constexpr int64_t kSpare = int64_t{1} << 16;
  const AllocationLimit limit(floats + kSpare,
                              detail::concat("needs more weights than the ", floats,
                                             " floats the file holds — a corrupt or crafted checkpoint"));
  try {
    return build_model(config);
  } catch (const Error& e) {
    fail(source_of(path), ": ", e.what());
  }
}

LoadedModel load_model(const std::string& path) {
  LoadedModel loaded;
  loaded.checkpoint = load_safetensors(path);
  upgrade_checkpoint(loaded.checkpoint, path);
  const MetadataReader m(loaded.checkpoint.metadata, source_of(path));
  loaded.config = ModelConfig::from_metadata(m);
  loaded.model = build_model_for(loaded.config, loaded.checkpoint, path);
  try {
    loaded.model->load_state(loaded.checkpoint.tensors);
  } catch (const Error& e) {
    fail(source_of(path), ": ", e.what());
  }
  return loaded;
}

}  // namespace minidl
