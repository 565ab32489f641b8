// A run's settings from flags or from a checkpoint (refusing a flag that contradicts it), and its objects.
#include "run.h"

#include <spdlog/spdlog.h>

#include <cmath>
#include <sstream>

namespace minidl::cli {
namespace {
// A flag's value, or `fallback` when this command does not define it (or it has no value).
template <class T>
T flag(const cxxopts::ParseResult& f, const char* name, T fallback) {
  try {
    return f[name].as<T>();
  } catch (const cxxopts::exceptions::exception&) {
    return fallback;
  }
}

std::string text(float v) { return exact_text(v); }
std::string text(int64_t v) { return std::to_string(v); }
std::string text(bool v) { return v ? "set" : "not set"; }
std::string text(const std::string& v) { return v; }
}  // namespace

void check_freeze_epochs(const RunConfig& r) {
  if (r.model.norm == NormMode::frozen && r.freeze_epochs >= r.epochs)
    fail("--freeze-epochs ", r.freeze_epochs, " leaves no epoch of ", r.epochs,
         " to train with batch statistics first: frozen mode freezes the moving averages those epochs leave, so it "
         "needs more epochs than it freezes (use --epochs ", r.freeze_epochs + 1, " or more, or fewer --freeze-epochs)");
}

Metadata RunConfig::to_metadata() const {
  Metadata m = model.to_metadata();
  if (model.norm == NormMode::frozen) m["train.freeze_epochs"] = std::to_string(freeze_epochs);
  if (cosine_decay) {  // the optimizer's own learning rate is the decayed one by the time it is saved
    m["train.lr_schedule"] = "cosine";
    m["train.initial_learning_rate"] = exact_text(learning_rate);
  }
  m.merge(data.to_metadata());
  return m;
}

DataSpec data_spec_from_flags(const cxxopts::ParseResult& f) {
  DataSpec spec;
  spec.train = flag<std::string>(f, "data", default_data_dir());
  spec.test = flag<std::string>(f, "test", "");
  spec.label = flag<std::string>(f, "label", "label");
  spec.validation_split = flag<double>(f, "validation-split", 0.0);
  if (!(spec.validation_split >= 0.0 && spec.validation_split < 1.0))
    fail("--validation-split must be in [0, 1), got ", spec.validation_split);
  return spec;
}

DataSpec data_spec_for(const cxxopts::ParseResult& f, const Metadata& checkpoint, const std::string& path, bool required) {
  if (f.count("data") || !checkpoint.count("data.train")) {
    if (required && !f.count("data"))
      fail("checkpoint '", path, "' does not record the data it was trained on (written by minidl 0.1): pass --data");
    return data_spec_from_flags(f);
  }
  return DataSpec::from_metadata(MetadataReader(checkpoint, "checkpoint '" + path + "'"));
}

void add_model_flags(cxxopts::Options& options) {
  options.add_options("model")(
      "model", "the model, e.g. dense:256,relu,bn,dense:10,softmax (docs/models.md); default: the document's",
      cxxopts::value<std::string>())("hidden", "shorthand: the document's model with this many hidden units",
                                     cxxopts::value<int64_t>())(
      "norm", "what each bn becomes: running, batchwise, manual, none, ghost, renorm, layer, group, frozen "
              "(docs/normalization.md)", cxxopts::value<std::string>()->default_value("running"))(
      "momentum", "BatchNormalization momentum, Keras convention (default 0.99; batchwise: 0)", cxxopts::value<float>())(
      "epsilon", "normalisation epsilon", cxxopts::value<float>()->default_value("0.001"))(
      "virtual-batch-size", "ghost mode: samples per ghost batch (default 8)", cxxopts::value<int64_t>())(
      "groups", "group mode: groups of channels (default 32)", cxxopts::value<int64_t>())(
      "renorm-momentum", "renorm mode: momentum of renorm's moving mean and stddev (default 0.99)", cxxopts::value<float>())(
      "renorm-clipping", "renorm mode: clip r and d, e.g. rmax=3,rmin=0.3333,dmax=5 (default: unclipped)",
      cxxopts::value<std::string>())(
      "freeze-epochs", "frozen mode: freeze the moving statistics for this many last epochs (default 1)",
      cxxopts::value<int>());
}

namespace {
// The flags of the norm variants, each refused unless --norm (or compare's --modes) selects its mode.
void variant_flags(const cxxopts::ParseResult& f, ModelConfig& c) {
  const std::string modes = flag<std::string>(f, "modes", "");
  const auto only = [&](const char* flag, NormMode mode) {
    if (!f.count(flag)) return false;
    if (modes.empty() && c.norm != mode)
      fail("--", flag, " applies to --norm ", to_string(mode), ", not ", to_string(c.norm));
    if (!modes.empty() && ("," + modes + ",").find("," + to_string(mode) + ",") == std::string::npos)
      fail("--", flag, " applies to --norm ", to_string(mode), ", which --modes '", modes, "' does not include");
    return true;
  };
  if (only("virtual-batch-size", NormMode::ghost)) {
    c.virtual_batch_size = f["virtual-batch-size"].as<int64_t>();
    if (c.virtual_batch_size < 1) fail("--virtual-batch-size must be >= 1, got ", c.virtual_batch_size);
  }
  if (only("groups", NormMode::group)) {
    c.groups = f["groups"].as<int64_t>();
    if (c.groups < 1) fail("--groups must be >= 1, got ", c.groups);
  }
  if (only("renorm-momentum", NormMode::renorm)) {
    c.renorm_momentum = f["renorm-momentum"].as<float>();
    if (!(c.renorm_momentum >= 0.0f && c.renorm_momentum <= 1.0f))
      fail("--renorm-momentum must be in [0, 1], got ", c.renorm_momentum);
  }
  if (only("renorm-clipping", NormMode::renorm)) {
    std::stringstream list(f["renorm-clipping"].as<std::string>());
    for (std::string item; std::getline(list, item, ',');) {
      const size_t eq = item.find('=');
      const std::string key = item.substr(0, eq);
      char* end = nullptr;
      const float v = eq == std::string::npos ? NAN : std::strtof(item.c_str() + eq + 1, &end);
      float* slot = key == "rmax" ? &c.rmax : key == "rmin" ? &c.rmin : key == "dmax" ? &c.dmax : nullptr;
      if (!slot || std::isnan(v) || *end != '\0')
        fail("--renorm-clipping: expected rmax=R, rmin=R and dmax=D separated by commas, got '", item, "'");
      *slot = v;
    }
    if (!std::isnan(c.rmax) && !(c.rmax >= 1.0f))
      fail("--renorm-clipping: rmax must be >= 1 (r = 1 leaves the batch statistics as they are), got ", c.rmax);
    if (!std::isnan(c.rmin) && !(c.rmin > 0.0f && c.rmin <= 1.0f))
      fail("--renorm-clipping: rmin must be in (0, 1], got ", c.rmin);
    if (!std::isnan(c.dmax) && !(c.dmax >= 0.0f)) fail("--renorm-clipping: dmax must be >= 0, got ", c.dmax);
  }
}
}  // namespace

ModelConfig model_config_from_flags(const cxxopts::ParseResult& f, const Dataset& train, NormMode default_norm) {
  if (f.count("model") && f.count("hidden"))
    fail("--model and --hidden exclude each other (--hidden N stands for --model dense:N,relu,bn,dense:CLASSES,softmax)");
  ModelConfig c;
  const int64_t hidden = flag<int64_t>(f, "hidden", 64);
  if (hidden < 1) fail("--hidden must be >= 1, got ", hidden);
  c.description = f.count("model") ? f["model"].as<std::string>() : document_model_description(hidden, train.num_classes);
  c.norm = f.count("norm") ? parse_norm_mode(f["norm"].as<std::string>()) : default_norm;
  c.input_shape = train.sample;
  c.classes = train.num_classes;
  c.class_names = train.class_names;
  if (f.count("momentum")) c.momentum = f["momentum"].as<float>();
  if (c.momentum && !(*c.momentum >= 0.0f && *c.momentum <= 1.0f))
    fail("--momentum must be in [0, 1] (Keras convention: the weight on the old moving value), got ", *c.momentum);
  c.epsilon = flag<float>(f, "epsilon", 1e-3f);
  if (!(c.epsilon > 0.0f) || !std::isfinite(c.epsilon)) fail("--epsilon must be a finite number > 0, got ", c.epsilon);
  c.seed = flag<uint64_t>(f, "seed", 1);
  if (c.seed > uint64_t{INT64_MAX}) fail("--seed must be < 2^63, got ", c.seed);
  variant_flags(f, c);
  return c;
}

RunConfig run_config_from_flags(const cxxopts::ParseResult& f, const Dataset& train, NormMode default_norm) {
  RunConfig r;
  r.model = model_config_from_flags(f, train, default_norm);
  r.epochs = flag<int>(f, "epochs", 5);
  r.max_steps = flag<int64_t>(f, "steps", -1);
  r.batch_size = flag<int64_t>(f, "batch-size", 32);
  r.learning_rate = flag<float>(f, "lr", 1e-3f);
  const std::string schedule = flag<std::string>(f, "lr-schedule", "constant");
  if (schedule != "constant" && schedule != "cosine")
    fail("--lr-schedule must be constant or cosine, got '", schedule, "'");
  r.cosine_decay = schedule == "cosine";
  r.shuffle = !flag<bool>(f, "no-shuffle", false);
  r.drop_last = flag<bool>(f, "drop-last", false);
  r.eval_batch_size = flag<int64_t>(f, "eval-batch-size", 32);
  r.data = data_spec_from_flags(f);
  const std::string modes = flag<std::string>(f, "modes", "");
  if (f.count("freeze-epochs") && (modes.empty() ? r.model.norm != NormMode::frozen
                                                 : ("," + modes + ",").find(",frozen,") == std::string::npos))
    fail("--freeze-epochs applies to --norm frozen, ", modes.empty() ? "not " + to_string(r.model.norm) : "which --modes does not include");
  r.freeze_epochs = flag<int>(f, "freeze-epochs", 1);
  if (r.freeze_epochs < 0) fail("--freeze-epochs must be >= 0, got ", r.freeze_epochs);
  check_freeze_epochs(r);
  if (r.epochs < 1) fail("--epochs must be >= 1, got ", r.epochs);
  if (r.max_steps < -1) fail("--steps must be >= 0, got ", r.max_steps);
  if (r.batch_size < 1) fail("--batch-size must be >= 1, got ", r.batch_size);
  if (r.eval_batch_size < 1) fail("--eval-batch-size must be >= 1, got ", r.eval_batch_size);
  if (!(r.learning_rate >= 0.0f) || !std::isfinite(r.learning_rate))
    fail("--lr must be a finite number >= 0, got ", r.learning_rate);
  return r;
}

RunConfig resumed_run_config(const cxxopts::ParseResult& f, const Checkpoint& checkpoint, const std::string& path) {
  Checkpoint upgraded = checkpoint;
  upgrade_checkpoint(upgraded, path);
  const MetadataReader m(upgraded.metadata, "checkpoint '" + path + "'");
  RunConfig saved;
  saved.model = ModelConfig::from_metadata(m);
  saved.epochs = static_cast<int>(m.integer("trainer.epochs", 1, 1 << 30));
  saved.batch_size = m.integer("loader.batch_size", 1, int64_t{1} << 40);
  saved.learning_rate = static_cast<float>(m.number("optimizer.learning_rate", 0.0, 1e30));
  saved.shuffle = m.boolean("loader.shuffle");
  saved.drop_last = m.has("loader.drop_last") && m.boolean("loader.drop_last");
  if (m.has("trainer.validation_batch_size"))
    saved.eval_batch_size = m.integer("trainer.validation_batch_size", 1, int64_t{1} << 40);
  saved.data = data_spec_for(f, upgraded.metadata, path, false);
  if (m.has("train.freeze_epochs")) saved.freeze_epochs = static_cast<int>(m.integer("train.freeze_epochs", 0, 1 << 30));
  if (m.has("train.lr_schedule")) {
    if (m.text("train.lr_schedule") != "cosine")
      fail("checkpoint '", path, "': train.lr_schedule is '", m.text("train.lr_schedule"), "', expected cosine");
    saved.cosine_decay = true;
    saved.learning_rate = static_cast<float>(m.number("train.initial_learning_rate", 0.0, 1e30));
  }

  // Flags the checkpoint fixes may be repeated with the same value (the same command line resumes), never
  // changed. Their values are read as a fresh run would read them, here with the checkpoint's data shapes.
  Dataset shapes;
  shapes.sample = saved.model.input_shape;
  shapes.num_classes = static_cast<int32_t>(saved.model.classes);
  shapes.class_names = saved.model.class_names;
  const RunConfig given = run_config_from_flags(f, shapes, saved.model.norm);
  const auto check = [&](const char* name, bool given_flag, const auto& mine, const auto& theirs) {
    if (given_flag && !(mine == theirs))
      fail("--", name, " ", text(mine), " differs from the checkpoint '", path, "', trained with ", text(theirs),
           ": a resumed run keeps its checkpoint's settings (give the same value, or leave the flag out)");
  };
  check(f.count("hidden") ? "hidden" : "model", f.count("model") || f.count("hidden"),
        canonical_description(given.model.description), canonical_description(saved.model.description));
  check("norm", f.count("norm"), to_string(given.model.norm), to_string(saved.model.norm));
  check("momentum", f.count("momentum"), given.model.bn_momentum(), saved.model.bn_momentum());
  check("epsilon", f.count("epsilon"), given.model.epsilon, saved.model.epsilon);
  check("virtual-batch-size", f.count("virtual-batch-size"), given.model.ghost_batch_size(), saved.model.ghost_batch_size());
  check("groups", f.count("groups"), given.model.group_count(), saved.model.group_count());
  check("renorm-momentum", f.count("renorm-momentum"), given.model.renorm_momentum, saved.model.renorm_momentum);
  check("renorm-clipping", f.count("renorm-clipping"),
        exact_text(given.model.rmax) + "," + exact_text(given.model.rmin) + "," + exact_text(given.model.dmax),
        exact_text(saved.model.rmax) + "," + exact_text(saved.model.rmin) + "," + exact_text(saved.model.dmax));
  check("freeze-epochs", f.count("freeze-epochs"), int64_t{given.freeze_epochs}, int64_t{saved.freeze_epochs});
  check("seed", f.count("seed"), static_cast<int64_t>(given.model.seed), static_cast<int64_t>(saved.model.seed));
  check("batch-size", f.count("batch-size"), given.batch_size, saved.batch_size);
  check("lr", f.count("lr"), given.learning_rate, saved.learning_rate);
  check("lr-schedule", f.count("lr-schedule"), std::string(given.cosine_decay ? "cosine" : "constant"),
        std::string(saved.cosine_decay ? "cosine" : "constant"));
  check("no-shuffle", f.count("no-shuffle"), !given.shuffle, !saved.shuffle);
  check("drop-last", f.count("drop-last"), given.drop_last, saved.drop_last);
  if (m.has("data.train")) {
    const Metadata given_data = given.data.to_metadata();
    check("data", f.count("data"), given_data.at("data.train"), m.text("data.train"));
    check("test", f.count("test"), given.data.test.empty() ? "" : given_data.at("data.test"),
          m.has("data.test") ? m.text("data.test") : "");
    check("label", f.count("label"), given.data.label, saved.data.label);
    check("validation-split", f.count("validation-split"), given_data.at("data.validation_split"),
          m.text("data.validation_split"));
  }
  // What may change: how long to train, and how to evaluate.
  saved.epochs = f.count("epochs") ? given.epochs : saved.epochs;
  saved.max_steps = given.max_steps;
  if (f.count("eval-batch-size")) saved.eval_batch_size = given.eval_batch_size;
  return saved;
}

void check_data_fits(const ModelConfig& model, const Dataset& data, const std::string& model_source) {
  if (data.features() != model.input_shape.numel() || data.num_classes > model.classes)
    fail("the model ", model_source, " takes samples of shape ", model.input_shape.str(), " in ", model.classes,
         " classes; the data has samples of shape ", data.sample.str(), " in ", data.num_classes, " classes");
}

Run::Run(const RunConfig& c, const DatasetSplits& data) : config(c) {
  check_data_fits(c.model, data.train, "'" + c.model.description + "'");
  check_data_fits(c.model, data.test, "'" + c.model.description + "'");
  model = build_model(c.model);
  optimizer = std::make_unique<Adam>(model->named_parameters(true), AdamOptions{.learning_rate = c.learning_rate});
  const int ranks = c.world ? c.world->size() : 1, rank = c.world ? c.world->rank() : 0;
  if (ranks > 1 && c.sync_batch_norm) synchronize_batch_norm(*model, c.world);
  if (ranks > 1) shard_dropout(*model, rank, ranks);
  LoaderOptions lo = training_loader_options(
      *model, data.train, {.batch_size = c.batch_size, .shuffle = c.shuffle, .drop_last = c.drop_last, .seed = c.model.seed});
  lo.shard = rank, lo.shards = ranks;
  if (ranks > 1 && !c.sync_batch_norm && c.batch_size / ranks < model->min_training_batch({1, data.train.features()}))
    fail("--bn-sync local normalises each process's slice of ", c.batch_size / ranks, " samples (batch size ",
         c.batch_size, " over ", ranks, " processes), too few for batch normalisation: use a larger batch or "
         "--bn-sync global");
  loader = std::make_unique<DataLoader>(data.train, lo, true);
  trainer = std::make_unique<Trainer>(*model, *optimizer, *loader,
                                      TrainerOptions{.epochs = c.epochs, .max_steps = c.max_steps, .validation = &data.test,
                                                     .validation_batch_size = c.eval_batch_size, .communicator = c.world});
  if (ranks > 1) trainer->add_callback(std::make_shared<AllReduceGradients>(*c.world));
  if (c.model.norm == NormMode::frozen) trainer->add_callback(std::make_shared<FreezeBatchNormStatistics>(c.freeze_epochs));
  if (c.cosine_decay)
    trainer->add_callback(std::make_shared<CosineDecay>(c.learning_rate, c.epochs * loader->batches_per_epoch()));
}

DatasetSplits load_logged(const DataSpec& spec) {
  spdlog::info("loading data from {}{}", spec.train, spec.test.empty() ? "" : " and " + spec.test);
  return load_data(spec);
}

}  // namespace minidl::cli
