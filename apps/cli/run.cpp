// A run's settings from flags or from a checkpoint (refusing a flag that contradicts it), and its objects.
#include "run.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <cmath>

#include "minidl/internal/text.h"
#include "minidl/statistics.h"
#include "settings.h"

namespace minidl::cli {
namespace {
bool contains(const std::vector<std::string>& items, const std::string& item) {
  return std::find(items.begin(), items.end(), item) != items.end();
}

// The checkpoint's value of a key as the resume check shows it.
std::string shown(const Metadata& m, const std::string& key) {
  const auto it = m.find(key);
  return it == m.end() ? "" : key == "model.description" ? canonical_description(it->second) : it->second;
}
}  // namespace

void check_freeze_epochs(const RunConfig& r) {
  if (!norm_kind(r.model.norm).option("freeze_epochs")) return;
  const int64_t frozen = static_cast<int64_t>(r.model.norm_option("freeze_epochs"));
  if (frozen >= r.epochs)
    fail("--freeze-epochs ", frozen, " leaves no epoch of ", r.epochs,
         " to train with batch statistics first: frozen mode freezes the moving averages those epochs leave, so it "
         "needs more epochs than it freezes (use --epochs ", frozen + 1, " or more, or fewer --freeze-epochs)");
}

Metadata RunConfig::to_metadata() const {
  Metadata m = model.to_metadata();
  m["trainer.epochs"] = std::to_string(epochs);
  m["trainer.validation_batch_size"] = std::to_string(eval_batch_size);
  m["loader.batch_size"] = std::to_string(batch_size);
  m["loader.shuffle"] = shuffle ? "1" : "0";
  m["loader.drop_last"] = drop_last ? "1" : "0";
  if (augment.any()) {  // as the Trainer writes them
    m["loader.augment_pad"] = std::to_string(augment.pad);
    m["loader.augment_flip"] = augment.flip ? "1" : "0";
  }
  // The optimizer's own learning rate is the decayed one by the time it is saved.
  m["train.lr_schedule"] = cosine_decay ? "cosine" : "constant";
  m["train.initial_learning_rate"] = exact_text(learning_rate);
  m["train.loss"] = to_string(loss);
  if (warmup_epochs != 0.0) m["train.warmup_epochs"] = exact_text(warmup_epochs);
  if (label_smoothing != 0.0f) m["train.label_smoothing"] = exact_text(label_smoothing);
  if (early_stopping != 0) m["train.early_stopping_patience"] = std::to_string(early_stopping);
  if (clip_norm != 0.0f) m["optimizer.global_clipnorm"] = exact_text(clip_norm);
  // As the optimizer's config() writes them (the Trainer adds its learning rate and the rest).
  m["optimizer.name"] = optimizer;
  if (weight_decay != 0.0f || optimizer == "adamw") m["optimizer.weight_decay"] = exact_text(weight_decay);
  if (optimizer == "sgd") {
    m["optimizer.momentum"] = exact_text(sgd_momentum);
    m["optimizer.nesterov"] = nesterov ? "1" : "0";
  }
  m.merge(data.to_metadata());
  return m;
}

RunConfig RunConfig::from_metadata(const MetadataReader& m) {
  RunConfig r;
  r.model = ModelConfig::from_metadata(m);
  r.epochs = static_cast<int>(m.integer("trainer.epochs", 1, 1 << 30));
  r.batch_size = m.integer("loader.batch_size", 1, int64_t{1} << 40);
  r.shuffle = m.boolean("loader.shuffle");
  r.drop_last = m.has("loader.drop_last") && m.boolean("loader.drop_last");
  if (m.has("loader.augment_pad")) r.augment.pad = m.integer("loader.augment_pad", 0, 1 << 20);
  r.augment.flip = m.has("loader.augment_flip") && m.boolean("loader.augment_flip");
  r.eval_batch_size = m.has("trainer.validation_batch_size")
                          ? m.integer("trainer.validation_batch_size", 1, int64_t{1} << 40)
                          : std::stoll(setting_named("eval-batch-size").fallback);
  r.cosine_decay = m.has("train.lr_schedule") && m.text("train.lr_schedule") == "cosine";
  if (m.has("train.lr_schedule") && !r.cosine_decay && m.text("train.lr_schedule") != "constant")
    m.fail_at("train.lr_schedule", "expected constant or cosine");
  r.learning_rate = static_cast<float>(m.has("train.initial_learning_rate")
                                           ? m.number("train.initial_learning_rate", 0.0, 1e30)
                                           : m.number("optimizer.learning_rate", 0.0, 1e30));
  if (m.has("data.train")) r.data = DataSpec::from_metadata(m);
  r.optimizer = m.has("optimizer.name") ? m.text("optimizer.name") : "adam";
  const std::vector<std::string>& optimizers = setting_named("optimizer").choices;
  if (!contains(optimizers, r.optimizer)) m.fail_at("optimizer.name", "expected " + internal::join(optimizers));
  r.weight_decay = m.has("optimizer.weight_decay") ? static_cast<float>(m.number("optimizer.weight_decay", 0.0, 1e6)) : 0.0f;
  r.sgd_momentum = m.has("optimizer.momentum") ? static_cast<float>(m.number("optimizer.momentum", 0.0, 1.0)) : 0.0f;
  r.nesterov = m.has("optimizer.nesterov") && m.boolean("optimizer.nesterov");
  const auto number_or_0 = [&](const char* key, double max) { return m.has(key) ? m.number(key, 0.0, max) : 0.0; };
  r.warmup_epochs = number_or_0("train.warmup_epochs", 1e6);
  r.label_smoothing = static_cast<float>(number_or_0("train.label_smoothing", 1.0));
  r.clip_norm = static_cast<float>(number_or_0("optimizer.global_clipnorm", 1e30));
  r.early_stopping = m.has("train.early_stopping_patience")
                         ? static_cast<int>(m.integer("train.early_stopping_patience", 1, 1 << 30)) : 0;
  r.loss = default_loss_of(r.model.description);  // checkpoints before --loss: the model's own
  if (m.has("train.loss")) {
    try {
      r.loss = parse_loss(m.text("train.loss"));
    } catch (const Error& e) {
      m.fail_at("train.loss", e.what());
    }
  }
  return r;
}

DataSpec data_spec_from_flags(const cxxopts::ParseResult& f) {
  DataSpec spec;
  spec.train = setting<std::string>(f, "data");
  spec.test = f.count("test") ? setting<std::string>(f, "test") : "";
  spec.label = setting<std::string>(f, "label");
  spec.validation_split = setting<double>(f, "validation-split");
  if (defines(f, "no-header")) spec.header = !setting<bool>(f, "no-header");
  if (defines(f, "ignore")) spec.ignore = optional_setting<std::string>(f, "ignore").value_or("");
  // What the labels hold follows the loss, given or implied by --model; unsaid, the labels decide.
  // (Commands that train define --loss; elsewhere --model names a checkpoint.)
  const bool trains = defines(f, "loss");
  const std::optional<std::string> loss = trains ? optional_setting<std::string>(f, "loss") : std::nullopt;
  const std::optional<std::string> model = trains ? optional_setting<std::string>(f, "model") : std::nullopt;
  if (loss || model)
    spec.targets = is_regression(loss ? parse_loss(*loss) : default_loss_of(*model)) ? CsvTargets::values : CsvTargets::classes;
  return spec;
}

DataSpec data_spec_for(const cxxopts::ParseResult& f, const Metadata& checkpoint, const std::string& path, bool required) {
  if (!checkpoint.count("data.train")) {
    if (required && !f.count("data"))
      fail("checkpoint '", path, "' does not record the data it was trained on (written by minidl 0.1): pass --data");
    return data_spec_from_flags(f);
  }
  const DataSpec saved = DataSpec::from_metadata(MetadataReader(checkpoint, "checkpoint '" + path + "'"));
  if (!f.count("data")) return saved;
  // Another file laid out as the training data: its columns are read as the checkpoint's were.
  DataSpec spec = data_spec_from_flags(f);
  if (!f.count("label")) spec.label = saved.label;
  if (!f.count("no-header")) spec.header = saved.header;
  if (!f.count("ignore")) spec.ignore = saved.ignore;
  spec.targets = saved.targets;
  return spec;
}

void add_model_flags(cxxopts::Options& options) {
  add_settings(options, {"model", "hidden", "epsilon", "standardize", "loss"});
  options.add_options("model")("norm", "what each bn becomes: " + norm_kind_names() + " (docs/normalization.md)",
                               cxxopts::value<std::string>()->default_value(setting_named("norm").fallback));
  // Read as text: norm_option_flags parses and checks them against their options.
  for (const std::string& flag : norm_flags())
    options.add_options("normalisation")(flag, option_help(flag), cxxopts::value<std::string>());
}

void add_training_flags(cxxopts::Options& options) {
  add_settings(options, {"epochs", "batch-size", "lr", "lr-schedule", "warmup-epochs", "steps", "no-shuffle", "drop-last",
                         "eval-batch-size", "optimizer", "weight-decay", "sgd-momentum", "nesterov", "clip-norm",
                         "label-smoothing", "early-stopping", "augment", "augment-pad", "augment-flip"});
}

ModelConfig model_config_from_flags(const cxxopts::ParseResult& f, const Dataset& train, const std::string& default_norm) {
  if (f.count("model") && f.count("hidden"))
    fail("--model and --hidden exclude each other (--hidden N stands for --model dense:N,relu,bn,dense:CLASSES,softmax)");
  ModelConfig c;
  const int64_t hidden = optional_setting<int64_t>(f, "hidden").value_or(64);
  c.description = f.count("model")         ? setting<std::string>(f, "model")
                  : train.is_regression() ? regression_model_description(hidden, train.outputs)
                                          : document_model_description(hidden, train.num_classes);
  if (setting<bool>(f, "standardize")) {
    if (parse_model_description(c.description).front().kind == "normalize")
      fail("--standardize puts a normalize layer first, and --model '", c.description, "' starts with one already: "
           "give one or the other");
    c.description = "normalize," + c.description;
  }
  c.norm = norm_kind(f.count("norm") ? setting<std::string>(f, "norm") : default_norm).name;
  c.input_shape = train.sample;
  c.classes = train.is_regression() ? 0 : train.num_classes;
  c.class_names = train.class_names;
  c.outputs = train.outputs;
  if (train.is_regression()) c.output_names = train.target_names;
  c.feature_names = train.feature_names;
  c.categories = train.categories;
  c.epsilon = setting<float>(f, "epsilon");
  c.seed = setting<uint64_t>(f, "seed");
  norm_option_flags(f, c);
  return c;
}

RunConfig run_config_from_flags(const cxxopts::ParseResult& f, const Dataset& train, const std::string& default_norm) {
  RunConfig r;
  r.model = model_config_from_flags(f, train, default_norm);
  r.epochs = setting<int>(f, "epochs");
  r.max_steps = setting<int64_t>(f, "steps");
  r.batch_size = setting<int64_t>(f, "batch-size");
  read_optimizer_flags(f, r);
  r.cosine_decay = setting<std::string>(f, "lr-schedule") == "cosine";
  // Flags of `train` alone (compare leaves them out): absent, off.
  const auto optional = [&](const char* name) { return defines(f, name) ? optional_setting<double>(f, name) : std::nullopt; };
  r.warmup_epochs = optional("warmup-epochs").value_or(0.0);
  r.label_smoothing = static_cast<float>(optional("label-smoothing").value_or(0.0));
  r.early_stopping = static_cast<int>(optional("early-stopping").value_or(0.0));
  r.shuffle = !setting<bool>(f, "no-shuffle");
  r.drop_last = setting<bool>(f, "drop-last");
  if (defines(f, "augment")) {
    if (!setting<bool>(f, "augment") && (f.count("augment-pad") || f.count("augment-flip")))
      fail("--augment-pad and --augment-flip say how --augment crops and flips the training images: add --augment");
    if (setting<bool>(f, "augment")) {
      r.augment.pad = setting<int64_t>(f, "augment-pad");
      r.augment.flip = setting<std::string>(f, "augment-flip") == "horizontal";
      if (!r.augment.any())
        fail("--augment with --augment-pad 0 and --augment-flip none changes no image: give a padding, a flip, or "
             "leave --augment out");
    }
  }
  r.eval_batch_size = setting_or_default<int64_t>(f, "eval-batch-size");  // compare has --eval-batch-sizes
  r.data = data_spec_from_flags(f);
  if (r.data.is_csv()) r.data.targets = train.is_regression() ? CsvTargets::values : CsvTargets::classes;
  const std::optional<std::string> loss = optional_setting<std::string>(f, "loss");
  r.loss = loss ? parse_loss(*loss) : default_loss_of(r.model.description);
  if (r.label_smoothing != 0.0f && is_regression(r.loss))
    fail("--label-smoothing applies to class labels (categorical or binary cross-entropy), but this run minimises ",
         to_string(r.loss), " on float targets");
  check_freeze_epochs(r);
  return r;
}

RunConfig resumed_run_config(const cxxopts::ParseResult& f, const Checkpoint& checkpoint, const std::string& path) {
  Checkpoint upgraded = checkpoint;
  upgrade_checkpoint(upgraded, path);
  RunConfig saved = RunConfig::from_metadata(MetadataReader(upgraded.metadata, "checkpoint '" + path + "'"));
  if (!upgraded.metadata.count("data.train")) saved.data = data_spec_for(f, upgraded.metadata, path, false);

  // Flags the checkpoint fixes may be repeated with the same value (the same command line resumes), never
  // changed. Their values are read as a fresh run would read them, here with the checkpoint's data shapes, and
  // compared as the checkpoint records them.
  const Dataset shapes = schema_of(saved.model);
  const RunConfig given = run_config_from_flags(f, shapes, saved.model.norm);
  const Metadata mine = given.to_metadata(), theirs = saved.to_metadata();
  const auto refuse = [&](const std::string& flag, const std::string& value, const std::string& saved_value) {
    fail("--", flag, value.empty() ? "" : " " + value, " differs from the checkpoint '", path, "', trained with ",
         saved_value.empty() ? "its default" : saved_value,
         ": a resumed run keeps its checkpoint's settings (give the same value, or leave the flag out)");
  };
  // Flags with values first: where a toggle and a value flag decide the same key (--augment, --augment-pad), the
  // value flag's message says what differs.
  std::vector<const Setting*> order;
  for (const bool toggles : {false, true})
    for (const Setting& s : settings())
      if ((s.type == Setting::Type::toggle) == toggles) order.push_back(&s);
  for (const Setting* setting : order) {
    const Setting& s = *setting;
    if (s.resumable || !f.count(s.name)) continue;
    for (const std::string& key : s.keys)
      if (shown(mine, key) != shown(theirs, key)) {
        if (s.type == Setting::Type::toggle && (shown(theirs, key).empty() || shown(theirs, key) == "0"))
          fail("--", s.name, " differs from the checkpoint '", path, "', trained without it: a resumed run keeps its "
               "checkpoint's settings (leave the flag out)");
        if (s.type == Setting::Type::toggle)  // on in both, with other values of the flags it goes with
          fail("--", s.name, " with these flags differs from the checkpoint '", path, "', trained with ", key, " ",
               shown(theirs, key), ": a resumed run keeps its checkpoint's settings (give its flags, or leave them out)");
        refuse(s.name, shown(mine, key), shown(theirs, key));
      }
  }
  for (const NormOption& o : norm_kind(saved.model.norm).options)
    if (f.count(o.flag) && given.model.norm_option(o.key) != saved.model.norm_option(o.key)) {
      const auto text = [&](const ModelConfig& c) {
        const double v = c.norm_option(o.key);
        return std::isnan(v) ? std::string("unset") : exact_text(v);
      };
      refuse(o.flag, text(given.model), text(saved.model));
    }
  // What may change: how long to train, and how to evaluate.
  saved.epochs = f.count("epochs") ? given.epochs : saved.epochs;
  saved.max_steps = given.max_steps;
  if (f.count("early-stopping")) saved.early_stopping = given.early_stopping;
  if (f.count("eval-batch-size")) saved.eval_batch_size = given.eval_batch_size;
  return saved;
}

Run::Run(const RunConfig& c, const DatasetSplits& data) : config(c) {
  check_data_fits(c.model, data.train, "'" + c.model.description + "'");
  check_data_fits(c.model, data.test, "'" + c.model.description + "'");
  if (c.augment.any()) check_augmentation(c.augment, data.train, c.data.train);
  model = build_model(c.model);
  adapt_normalization(*model, data.train);
  optimizer = make_optimizer(c, model->named_parameters(true));
  const int ranks = c.world ? c.world->size() : 1, rank = c.world ? c.world->rank() : 0;
  if (ranks > 1 && c.sync_batch_norm) synchronize_batch_norm(*model, c.world);
  LoaderOptions lo = training_loader_options(
      *model, data.train, {.batch_size = c.batch_size, .shuffle = c.shuffle, .drop_last = c.drop_last, .seed = c.model.seed});
  lo.shard = rank, lo.shards = ranks;
  lo.augment = c.augment;
  loader = std::make_unique<DataLoader>(data.train, lo, c.loss == Loss::categorical_crossentropy);
  // The smallest slice: ⌊b/N⌋ of the smallest batch b (the last one's, when it is partial).
  const int64_t smallest = std::min(c.batch_size, loader->last_batch_size()) / ranks;
  if (ranks > 1 && !c.sync_batch_norm && smallest < model->min_training_batch({1, data.train.features()}))
    fail("--bn-sync local normalises each process's slice, which can be as small as ", smallest, " samples (batch size ",
         c.batch_size, ", last batch ", loader->last_batch_size(), ", over ", ranks, " processes), too few for batch "
         "normalisation: use a larger batch, --drop-last, or --bn-sync global");
  if (c.early_stopping > 0 && data.test.size() == 0)
    fail("--early-stopping watches the test loss, but this run has no test data: give --test FILE or --validation-split F");
  trainer = std::make_unique<Trainer>(*model, *optimizer, *loader,
                                      TrainerOptions{.epochs = c.epochs, .max_steps = c.max_steps, .validation = &data.test,
                                                     .validation_batch_size = c.eval_batch_size, .loss = c.loss,
                                                     .label_smoothing = c.label_smoothing, .communicator = c.world});
  // Between backward and the step, in this order: the all-reduce, the learning rate of the step, the clipping of
  // the (averaged) gradients.
  if (ranks > 1) trainer->add_callback(std::make_shared<AllReduceGradients>(*c.world));
  const int64_t steps = c.epochs * loader->batches_per_epoch();
  warmup_steps = minidl::cli::warmup_steps(c, loader->batches_per_epoch());
  if (c.cosine_decay && warmup_steps > 0)
    trainer->add_callback(std::make_shared<CosineDecay>(0.0f, steps - warmup_steps, 0.0f, c.learning_rate, warmup_steps));
  else if (c.cosine_decay)
    trainer->add_callback(std::make_shared<CosineDecay>(c.learning_rate, steps));
  else if (warmup_steps > 0)
    trainer->add_callback(std::make_shared<LinearWarmup>(c.learning_rate, warmup_steps));
  if (c.clip_norm > 0.0f) trainer->add_callback(std::make_shared<ClipGradientNorm>(c.clip_norm));
  if (c.early_stopping > 0)
    trainer->add_callback(early_stopping = std::make_shared<EarlyStopping>(
                              EarlyStoppingOptions{.monitor = "val_loss", .patience = c.early_stopping}));
}

void check_augmentation(const Augmentation& augment, const Dataset& train, const std::string& source) {
  const Shape& sample = train.sample;
  if (!train.is_images() || sample.rank() != 3)
    fail("--augment crops and flips images, but '", source, "' holds ",
         train.is_images() ? "samples of shape " + shape_text(sample) : "table rows of numbers", ": leave --augment out");
  const int64_t side = std::min(sample[0], sample[1]);
  if (augment.pad >= side)
    fail("--augment-pad ", augment.pad, " shifts '", source, "''s ", sample[0], "×", sample[1], " images by as much as "
         "they measure, which can leave an image blank: give less than ", side, " (ResNet's recipe pads 32×32 images by 4)");
}

int64_t warmup_steps(const RunConfig& c, int64_t batches_per_epoch) {
  if (c.warmup_epochs == 0.0) return 0;
  const int64_t warmup = std::llround(c.warmup_epochs * static_cast<double>(batches_per_epoch));
  const int64_t steps = c.epochs * batches_per_epoch;
  if (warmup < 1)
    fail("--warmup-epochs ", exact_text(c.warmup_epochs), " is less than half a step (", batches_per_epoch,
         " steps an epoch): give at least ", exact_text(0.5 / static_cast<double>(batches_per_epoch)), ", or leave it out");
  if (warmup >= steps)
    fail("--warmup-epochs ", exact_text(c.warmup_epochs), " is ", warmup, " steps, and the run has ", steps, " (--epochs ",
         c.epochs, "): the warm-up would leave no step at the learning rate it warms up to — use fewer warm-up epochs "
         "or more --epochs");
  return warmup;
}

DatasetSplits load_logged(const DataSpec& spec) {
  spdlog::info("loading data from {}{}", spec.train, spec.test.empty() ? "" : " and " + spec.test);
  return load_data(spec);
}

Dataset schema_of(const ModelConfig& model) {
  Dataset d;
  d.sample = model.input_shape;
  d.num_classes = static_cast<int32_t>(model.classes);
  d.class_names = model.class_names;
  d.outputs = model.outputs;
  d.target_names = model.output_names;
  d.feature_names = model.feature_names;
  d.categories = model.categories;
  return d;
}

DatasetSplits load_for_model(const DataSpec& spec, const ModelConfig& model) {
  if (!spec.is_csv() || !spec.test.empty() || spec.validation_split > 0.0) return load_logged(spec);
  spdlog::info("loading data from {}", spec.train);
  const Dataset schema = schema_of(model);
  DatasetSplits s;
  s.test = load_csv(spec.train, spec.csv(), &schema);
  s.train = s.test.slice(0, 0);
  return s;
}

}  // namespace minidl::cli
