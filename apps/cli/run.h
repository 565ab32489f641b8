// A training run on the command line: the settings flags give (or a checkpoint fixes), and the model,
// optimizer, loader and Trainer built from them. Shared by train, compare, gradcheck, bench and summary.
#pragma once

#include <cxxopts.hpp>

#include <memory>
#include <string>

#include "minidl/callbacks.h"
#include "minidl/data.h"
#include "minidl/models.h"
#include "minidl/normalization.h"
#include "minidl/train.h"

namespace minidl::cli {

/// A run's settings, as run_config_from_flags reads them from the flags (settings.h holds their defaults) or
/// resumed_run_config from a checkpoint.
struct RunConfig {
  ModelConfig model;
  int epochs = 0;
  int64_t max_steps = -1;  ///< -1: no limit
  int64_t batch_size = 0;
  float learning_rate = 0;  ///< the initial one, with a schedule
  /// --optimizer: adam, adamw or sgd; --weight-decay (decoupled), --sgd-momentum and --nesterov (sgd only).
  std::string optimizer = "adam";
  float weight_decay = 0.0f;
  float sgd_momentum = 0.0f;
  bool nesterov = false;
  /// --lr-schedule cosine: Keras's CosineDecay from learning_rate to 0 over all the epochs (--steps only stops
  /// early); the checkpoint records it, so a resumed run continues the same schedule.
  bool cosine_decay = false;
  /// --warmup-epochs: the learning rate rises linearly from 0 over this many epochs' steps, then the schedule
  /// (0: none).
  double warmup_epochs = 0.0;
  /// --label-smoothing (Keras's label_smoothing), --clip-norm (the global norm; 0: none), --early-stopping (the
  /// patience in epochs on the test loss; 0: none).
  float label_smoothing = 0.0f;
  float clip_norm = 0.0f;
  int early_stopping = 0;
  bool shuffle = true;
  bool drop_last = false;
  /// --augment, --augment-pad, --augment-flip: the training images' crops and flips (none by default).
  Augmentation augment;
  int64_t eval_batch_size = 0;
  /// What the model minimises: --loss, or what its last layer implies (default_loss_of).
  Loss loss = Loss::categorical_crossentropy;
  DataSpec data;
  /// Data parallelism: the processes sharing each (global) batch, this one's synchronised batch normalisation
  /// (--bn-sync global) or not; a world of one trains alone. Not recorded: any number of processes resumes.
  Communicator* world = nullptr;
  bool sync_batch_norm = true;

  /// What a checkpoint records of these settings: the model, the training settings under the keys the Trainer
  /// writes them (loader.batch_size, ...) and train.*, and the data. The keys settings.h lists.
  Metadata to_metadata() const;
  /// The settings a checkpoint records (older checkpoints: what they lack takes the defaults).
  static RunConfig from_metadata(const MetadataReader& metadata);
};

/// Reads --lr, --optimizer, --weight-decay, --sgd-momentum, --nesterov and --clip-norm into `config`, refusing the
/// SGD flags without --optimizer sgd and --nesterov without momentum (a command without --optimizer trains with
/// Adam).
void read_optimizer_flags(const cxxopts::ParseResult& flags, RunConfig& config);
/// The optimizer `config` names, over `parameters`.
std::unique_ptr<Optimizer> make_optimizer(const RunConfig& config, const NamedTensors& parameters);

/// Refuses frozen mode when it would freeze every epoch (--freeze-epochs >= the epochs).
void check_freeze_epochs(const RunConfig& config);
/// The data the flags name: --data (an IDX directory or a CSV file), --test, --label, --validation-split,
/// --no-header, --ignore; the CSV labels are read as classes or values as --loss (or --model's last layer) says.
DataSpec data_spec_from_flags(const cxxopts::ParseResult& flags);
/// The data a command uses when it has a checkpoint: the checkpoint's, with --data's file when given (read with
/// the checkpoint's label column, header and ignored columns unless --label, --no-header or --ignore say
/// otherwise); refused when the checkpoint does not record its data, `required` and no --data is given.
DataSpec data_spec_for(const cxxopts::ParseResult& flags, const Metadata& checkpoint, const std::string& path, bool required);

/// The normalisation kinds' option flags (momentum, renorm-clipping, ...), each once, in registration order.
std::vector<std::string> norm_flags();
/// An option flag's help: what it sets, the kinds that take it and their defaults.
std::string option_help(const std::string& flag);
/// Reads the option flags given into `config.norm_options`, each checked against its option's range and refused
/// unless a kind the command trains (--norm, or compare's --modes) takes it.
void norm_option_flags(const cxxopts::ParseResult& flags, ModelConfig& config);

/// Adds --model, --hidden, --norm, --epsilon, --standardize, --loss and every normalisation kind's option flags
/// (--momentum, ...).
void add_model_flags(cxxopts::Options& options);
/// Adds the training settings: --epochs, --steps, --batch-size, --lr, --lr-schedule, --warmup-epochs, --no-shuffle,
/// --drop-last, --eval-batch-size, the optimizer's flags, --label-smoothing, --clip-norm and --early-stopping.
void add_training_flags(cxxopts::Options& options);
/// The model the flags describe for this data: --model, or the document's model (--hidden wide; for float
/// targets its regression form) by default, after a normalize layer with --standardize; input shape, classes,
/// outputs and column names from the data; the norm kind is `default_norm` unless --norm is given.
ModelConfig model_config_from_flags(const cxxopts::ParseResult& flags, const Dataset& train,
                                    const std::string& default_norm = ModelConfig{}.norm);
/// Every setting from the flags (the table's defaults where a command lacks them).
RunConfig run_config_from_flags(const cxxopts::ParseResult& flags, const Dataset& train,
                                const std::string& default_norm = ModelConfig{}.norm);
/// The settings a checkpoint was trained with; a flag given with a different value than the checkpoint's is
/// refused, naming both; only the settings the table marks resumable (--epochs, --steps, --eval-batch-size) may
/// change.
RunConfig resumed_run_config(const cxxopts::ParseResult& flags, const Checkpoint& checkpoint, const std::string& path);

/// The objects of one run, in construction order (the trainer refers to the others).
struct Run {
  Run(const RunConfig& config, const DatasetSplits& data);
  RunConfig config;
  std::shared_ptr<Sequential> model;
  std::unique_ptr<Optimizer> optimizer;  ///< --optimizer's
  std::unique_ptr<DataLoader> loader;
  std::unique_ptr<Trainer> trainer;
  std::shared_ptr<EarlyStopping> early_stopping;  ///< with --early-stopping
  int64_t warmup_steps = 0;                       ///< --warmup-epochs in steps
};

/// --warmup-epochs in steps of `batches_per_epoch`, rounded to the nearest; refused when it rounds to no step or
/// leaves none of the run's steps after it.
int64_t warmup_steps(const RunConfig& config, int64_t batches_per_epoch);
/// Refuses --augment on data that is not images (height × width × channels) and a padding as large as an image's
/// side; `source` names the data.
void check_augmentation(const Augmentation& augment, const Dataset& train, const std::string& source);

/// Throws unless the data's samples have the model's input size and its labels fit the model's classes (or its
/// targets its outputs).
void check_data_fits(const ModelConfig& model, const Dataset& data, const std::string& model_source);
/// Warns when a table's features differ in spread a thousandfold and the model has no normalize layer, naming the
/// widest and the narrowest and suggesting --standardize.
void warn_if_unscaled(const ModelConfig& model, const Dataset& train);
/// Loads the data a spec names, logging where from.
DatasetSplits load_logged(const DataSpec& spec);
/// An empty data set shaped as the model's training data: sample shape, classes or outputs, column names; new
/// files are read against it as a test file is read against the training data.
Dataset schema_of(const ModelConfig& model);
/// The data a saved model is evaluated on: a CSV file alone (no test file, no split) is itself the evaluated
/// set, read against the model's schema; anything else loads as load_logged does. `train` of the result is then
/// empty.
DatasetSplits load_for_model(const DataSpec& spec, const ModelConfig& model);

}  // namespace minidl::cli
