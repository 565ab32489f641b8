// The table of run settings (settings.h): every flag a training run takes, its default once, its range and the
// checkpoint keys it decides.
#include "settings.h"

#include <cstdio>
#include <cstdlib>

#include "minidl/data.h"
#include "minidl/internal/text.h"
#include "minidl/losses.h"
#include "minidl/metadata.h"
#include "minidl/models.h"
#include "minidl/optim.h"
#include "minidl/train.h"

namespace minidl::cli {
namespace {
using Type = Setting::Type;

std::vector<Setting> make_settings() {
  // The library's own defaults, where it has them: Keras's.
  const ModelConfig model;
  const AdamOptions adam;
  const DataSpec data;
  const LoaderOptions loader;
  const TrainerOptions trainer;
  return {
      // The model.
      {"model", "the model, e.g. dense:256,relu,bn,dense:10,softmax (docs/models.md); default: the document's",
       Type::text, "", -INFINITY, INFINITY, {}, {"model.description"}, false, "model"},
      {"hidden", "shorthand: the document's model with this many hidden units", Type::integer, "", 1, double(1 << 24), {},
       {"model.description"}, false, "model"},
      {"norm", "", Type::text, model.norm, -INFINITY, INFINITY, {}, {"model.norm"}, false, "model"},
      {"epsilon", "normalisation epsilon", Type::number, exact_text(model.epsilon), 1e-12, 1e3, {}, {"model.epsilon"},
       false, "model"},
      {"standardize", "put Keras's Normalization layer (normalize) first: every feature centred and scaled by the "
                      "training data's mean and standard deviation", Type::toggle, "", -INFINITY, INFINITY, {},
       {"model.description"}, false, "model"},
      {"loss", "what to minimise: " + internal::join(loss_names()) + " (default: from the model's last layer — "
               "softmax: categorical_crossentropy, sigmoid: binary_crossentropy, else mse)",
       Type::text, "", -INFINITY, INFINITY, loss_names(), {"train.loss"}, false, "model"},
      // Training.
      {"epochs", "epochs in all", Type::integer, "5", 1, double(1 << 30), {}, {"trainer.epochs"}, true},
      {"steps", "stop after this many optimizer steps in all (-1: no limit)", Type::integer, "-1", -1, INFINITY, {}, {}, true},
      {"batch-size", "training batch size", Type::integer, std::to_string(loader.batch_size), 1, INFINITY, {}, {"loader.batch_size"}},
      {"lr", "the learning rate (with --optimizer sgd and no --lr: 0.01, Keras's SGD default)", Type::number,
       exact_text(adam.learning_rate), 0, INFINITY, {}, {"train.initial_learning_rate"}},
      {"optimizer", "adam, adamw (Adam with decoupled weight decay, 0.004 by default) or sgd (with --sgd-momentum and "
                    "--nesterov); Keras's formulas (docs/keras.md)", Type::text, "adam", -INFINITY, INFINITY,
       {"adam", "adamw", "sgd"}, {"optimizer.name"}},
      {"weight-decay", "decoupled weight decay: each step θ −= θ·decay·lr before the update (Keras's weight_decay; "
                       "default 0, adamw 0.004)", Type::number, "", 0, 1e6, {}, {"optimizer.weight_decay"}},
      {"sgd-momentum", "SGD's momentum, Keras's SGD(momentum=...) (--momentum is BatchNormalization's)", Type::number,
       exact_text(SGDOptions{}.momentum), 0, 1, {}, {"optimizer.momentum"}},
      {"nesterov", "SGD with Nesterov momentum (needs --sgd-momentum above 0)", Type::toggle, "", -INFINITY, INFINITY,
       {}, {"optimizer.nesterov"}},
      {"lr-schedule", "constant, or cosine: Keras's CosineDecay from --lr to 0 over all the epochs", Type::text,
       "constant", -INFINITY, INFINITY, {"constant", "cosine"}, {"train.lr_schedule"}},
      {"warmup-epochs", "raise the learning rate linearly from 0 to --lr over this many epochs (fractions too) before "
                        "the schedule (Keras's CosineDecay warmup_steps; default 0)", Type::number, "", 0, 1e6, {},
       {"train.warmup_epochs"}},
      {"label-smoothing", "Keras's label_smoothing: class targets become y·(1 − s) + s/K (binary: + s/2), in the "
                          "training and the test loss (default 0)", Type::number, "", 0, 1, {}, {"train.label_smoothing"}},
      {"clip-norm", "clip the gradients by their global norm: g·C/max(‖g‖, C), Keras's global_clipnorm (default: "
                    "no clipping)", Type::number, "", 0, INFINITY, {}, {"optimizer.global_clipnorm"}},
      {"early-stopping", "stop when the test loss has not improved for this many epochs (Keras's EarlyStopping, "
                         "monitor val_loss, patience N)", Type::integer, "", 1, double(1 << 30), {},
       {"train.early_stopping_patience"}, true},
      {"augment", "augment the training images: zero-pad them by --augment-pad pixels, crop back to their size at a "
                  "random offset and mirror half of them left to right (--augment-flip), the ResNet recipe; drawn "
                  "from --seed", Type::toggle, "", -INFINITY, INFINITY, {}, {"loader.augment_pad", "loader.augment_flip"}},
      {"augment-pad", "with --augment: the zero padding, and so the largest shift, in pixels (0: no crop)",
       Type::integer, "4", 0, double(1 << 20), {}, {"loader.augment_pad"}},
      {"augment-flip", "with --augment: horizontal (mirror half the images), or none (for images a mirror changes, "
                       "such as digits)", Type::text, "horizontal", -INFINITY, INFINITY, {"horizontal", "none"},
       {"loader.augment_flip"}},
      {"no-shuffle", "keep file order instead of a fresh permutation each epoch", Type::toggle, "", -INFINITY, INFINITY,
       {}, {"loader.shuffle"}},
      {"drop-last", "drop the partial last batch of each epoch (by default it is kept, unless it is too small for "
                    "batch normalisation: 1 sample)", Type::toggle, "", -INFINITY, INFINITY, {}, {"loader.drop_last"}},
      {"eval-batch-size", "test evaluation batch size (manual mode normalises each batch by itself)", Type::integer,
       std::to_string(trainer.validation_batch_size), 1, INFINITY, {}, {"trainer.validation_batch_size"}, true},
      // Data and the machine.
      {"data", "a directory of MNIST-format files (or set MINIDL_DATA), a folder of class folders of images "
               "(DIR/train/<class>/*.png, DIR/test/...), or a CSV file", Type::text, default_data_dir(),
       -INFINITY, INFINITY, {}, {"data.train"}, false, "common"},
      {"test", "a CSV test file (with a CSV --data)", Type::text, "", -INFINITY, INFINITY, {}, {"data.test"}, false, "common"},
      {"label", "the CSV label column, by name or 0-based index (several, separated by commas: regression targets)",
       Type::text, data.label, -INFINITY, INFINITY, {}, {"data.label"}, false, "common"},
      {"no-header", "the CSV files have no header line: columns are numbered from 0", Type::toggle, "", -INFINITY,
       INFINITY, {}, {"data.header"}, false, "common"},
      {"ignore", "CSV columns to leave out, by name or 0-based index, separated by commas", Type::text, "", -INFINITY,
       INFINITY, {}, {"data.ignore"}, false, "common"},
      {"validation-split", "hold out this last fraction of the training data as the test set", Type::number,
       exact_text(data.validation_split), 0, 0.99, {}, {"data.validation_split"}, false, "common"},
      {"seed", "seed for initial weights, dropout, shuffling and augmentation", Type::integer, std::to_string(model.seed), 0,
       9.2e18, {}, {"model.seed"}, false, "common"},
      {"threads", "OpenMP threads (0: train times each count while it trains and keeps the fastest; the other commands use every core)", Type::integer, "0", 0, 4096, {}, {}, true, "common"},
  };
}

std::string number_text(const Setting& s, double v) {
  return s.type == Type::integer ? std::to_string(static_cast<long long>(v)) : exact_text(v);
}
}  // namespace

void Setting::check(double value) const {
  if (std::isfinite(value) && value >= min && value <= max) return;
  if (std::isinf(max))
    fail("--", name, " must be ", type == Type::integer ? "" : "a finite number ", ">= ", number_text(*this, min), ", got ",
         number_text(*this, value));
  fail("--", name, " must be ", type == Type::integer ? "a whole number" : "a number", " in [", number_text(*this, min),
       ", ", number_text(*this, max), "], got ", number_text(*this, value));
}

void Setting::check(const std::string& value) const {
  if (choices.empty()) return;
  for (const std::string& c : choices)
    if (c == value) return;
  std::string list;
  for (size_t i = 0; i < choices.size(); ++i) list += (i == 0 ? "" : i + 1 == choices.size() ? " or " : ", ") + choices[i];
  fail("--", name, " must be ", list, ", got '", value, "'");
}

const std::vector<Setting>& settings() {
  static const std::vector<Setting> table = make_settings();
  return table;
}

const Setting& setting_named(const std::string& name) {
  for (const Setting& s : settings())
    if (s.name == name) return s;
  fail("internal error: the code asks for the setting --", name, ", which apps/cli/settings.cpp does not define");
}

bool defines(const cxxopts::ParseResult& f, const std::string& name) {
  try {
    (void)f[name];
    return true;
  } catch (const cxxopts::exceptions::requested_option_not_present&) {
    return false;
  }
}

void add_settings(cxxopts::Options& options, const std::vector<std::string>& names) {
  for (const std::string& name : names) {
    const Setting& s = setting_named(name);
    std::shared_ptr<cxxopts::Value> value;
    switch (s.type) {
      case Type::integer: value = cxxopts::value<int64_t>(); break;
      case Type::number: value = cxxopts::value<double>(); break;
      case Type::text: value = cxxopts::value<std::string>(); break;
      case Type::toggle: value = cxxopts::value<bool>(); break;
    }
    if (!s.fallback.empty()) value->default_value(s.fallback);
    options.add_options(s.group)(name, s.help, value);
  }
}

}  // namespace minidl::cli
