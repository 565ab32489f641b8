// Training: the one training loop (Trainer) with its callbacks and training checkpoints, the step it runs,
// and Keras-style fit / evaluate / predict built on the same pieces.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "minidl/checkpoint.h"
#include "minidl/data.h"
#include "minidl/losses.h"
#include "minidl/metadata.h"
#include "minidl/module.h"
#include "minidl/optim.h"
#include "minidl/threads.h"

namespace minidl {

/// What one training step saw, measured in training mode before the update (as Keras logs it).
struct StepResult {
  double loss = 0.0;
  int64_t correct = 0;       ///< classification: samples whose predicted class is the label
  int64_t samples = 0;
  double abs_error = 0.0;    ///< regression: Σ |y − ŷ| over the batch's targets
};

struct EpochLogs {
  int epoch = 0;            ///< 1-based
  double loss = 0.0;        ///< batch-size-weighted mean over the steps run
  double accuracy = 0.0;    ///< classification
  bool regression = false;  ///< the data has float targets: mae (and the val_ regression metrics) apply
  double mae = 0.0;         ///< regression: mean |y − ŷ| over the epoch's targets
  int64_t steps = 0;
  double seconds = 0.0;     ///< the training loop of this epoch alone
  bool has_validation = false;
  double val_loss = 0.0, val_accuracy = 0.0;  ///< when validation data is set
  double val_mae = 0.0, val_rmse = 0.0, val_r2 = 0.0;  ///< regression, when validation data is set
  double val_auc = 0.0;     ///< binary classification (one sigmoid output), when validation data is set
};

/// What a step computes before backward: the loss to minimise and the prediction the metrics score.
struct ForwardResult {
  Tensor loss;
  Tensor prediction;
};
/// A step's forward pass on a batch, the model in training mode (a custom train_step's "with GradientTape").
using ForwardFn = std::function<ForwardResult(Module& model, const Batch& batch)>;
/// prediction = model(batch.x), loss = categorical cross-entropy against batch.one_hot (a softmax output takes
/// the stable logits path, as Keras's fit).
ForwardResult categorical_forward(Module& model, const Batch& batch);
/// The forward pass for a loss: categorical against batch.one_hot, binary against the labels as one column of
/// 0 and 1, the regression losses against batch.targets, the class targets smoothed by `label_smoothing`
/// (smooth_labels; Keras's label_smoothing). The Trainer's default, with default_loss(model).
ForwardFn loss_forward(Loss loss, float label_smoothing = 0.0f);
/// The targets `loss` compares a batch's predictions with (one_hot, the labels as a column, or targets).
Tensor batch_targets(Loss loss, const Batch& batch);

/// The loop body a user would write: training-mode forward, the loss the model's last layer implies
/// (default_loss: categorical cross-entropy against the batch's one-hot targets for a softmax), backward,
/// optimizer step.
StepResult train_step(Module& model, Optimizer& optimizer, const Batch& batch);

class Trainer;
class Communicator;

/// Hooks into the Trainer's loop, as Keras's callbacks. Every method does nothing unless overridden.
class Callback {
 public:
  virtual ~Callback() = default;
  virtual void on_train_begin(Trainer&) {}
  virtual void on_epoch_begin(Trainer&) {}
  /// Between backward and the optimizer step: the gradients are complete and may be changed (all-reduced
  /// across processes, clipped).
  virtual void on_after_backward(Trainer&) {}
  virtual void on_step_end(Trainer&, const StepResult&) {}
  /// After the epoch's validation.
  virtual void on_epoch_end(Trainer&, const EpochLogs&) {}
  virtual void on_train_end(Trainer&) {}
  /// When the Trainer's timing of its steps settles on a thread count: the first time, and each time it changes
  /// (TrainerOptions::threads 0).
  virtual void on_threads_chosen(Trainer&, const ThreadChoice&) {}
  /// What the callback carries across a resume: Trainer::save adds it to the checkpoint's metadata, under keys of
  /// the callback's own ("early_stopping.wait").
  virtual void save_state(const Trainer&, Metadata&) const {}
  /// In a fit() after Trainer::resume, right after on_train_begin: the resumed checkpoint's metadata, whose keys
  /// save_state wrote — or did not, when the run was saved without this callback.
  virtual void load_state(Trainer&, const MetadataReader&) {}
};

/// What a Trainer does when a step's loss is NaN or infinite.
enum class OnNonFinite {
  stop,        ///< throw NonFiniteLoss before the step's update: the weights stay those of the last good step
  keep_going,  ///< apply the step anyway and go on (Keras's fit without TerminateOnNaN)
};

/// A step's loss was NaN or infinite and TrainerOptions::on_non_finite is stop. The message names the step and
/// where the first non-finite value appears (find_non_finite). The step was not applied: the weights and the
/// optimizer are those of the last good step (moving statistics, updated by the failed step's forward pass, may
/// hold the non-finite values).
class NonFiniteLoss : public Error {
 public:
  NonFiniteLoss(const std::string& message, int64_t step) : Error(message), step_(step) {}
  /// The 1-based step whose loss was not finite.
  int64_t step() const { return step_; }

 private:
  int64_t step_;
};

/// The first tensor holding a NaN or infinite value, described as "'dense/kernel' holds nan (element 17 of
/// 50176)"; empty when every value is finite.
std::string first_non_finite(const NamedTensors& tensors);

/// Where a forward pass on x first produces a non-finite value: a weight that holds one, else the input itself,
/// else the first layer of a Sequential whose output holds one while its input does not (with the size its
/// weights reached), else a buffer (moving statistics) that holds one. Empty when the forward pass stays finite
/// (then the loss itself overflowed). The replay runs in inference mode with batch statistics, as training
/// normalises: it changes no state and draws no random numbers.
std::string find_non_finite(Module& model, const Tensor& x);

struct TrainerOptions {
  int epochs = 1;             ///< epochs in all, counting those a resumed run already did
  int64_t max_steps = -1;     ///< stop after this many optimizer steps in all; -1: no limit
  const Dataset* validation = nullptr;  ///< evaluated in inference mode after every epoch (val_loss, val_accuracy)
  int64_t validation_batch_size = kDefaultBatchSize;
  /// What the model minimises (and validation reports); empty: default_loss(model), from its last layer (beside
  /// a `forward` of your own, the data's kind when the last layer implies a loss the data cannot take).
  std::optional<Loss> loss{};
  /// Keras's label_smoothing (smooth_labels): the class targets of categorical or binary cross-entropy become
  /// y·(1 − s) + s/K (binary: + s/2), in training and in the validation loss, as Keras's compiled loss has it.
  /// In [0, 1]; needs the default forward (a forward of your own smooths its own targets).
  float label_smoothing = 0.0f;
  ForwardFn forward{};        ///< empty: loss_forward(the loss, label_smoothing)
  OnNonFinite on_non_finite = OnNonFinite::stop;
  /// Data parallelism: the processes sharing each batch; the epoch's loss and accuracy are summed over them, so
  /// every process logs the global batch's. nullptr: this process alone.
  Communicator* communicator = nullptr;
  /// OpenMP threads for the steps run_epoch() and fit() run. 0: time the steps at each count of thread_tuning's
  /// candidates (by default 1 … omp_get_max_threads()) during the first epoch, again when step times drift and
  /// every retime_seconds, and run on the fastest (ThreadTuner); N >= 1: every step on N. The results are the same
  /// bits for any count. The caller's own count is restored when run_epoch() returns.
  int threads = 0;
  ThreadTunerOptions thread_tuning{};
};

/// The training loop: steps over a DataLoader's batches, epochs, callbacks, and training checkpoints that
/// resume exactly. The model, optimizer and loader must outlive it. fit() and run_epoch() flush subnormal floats
/// to zero while they run (minidl/denormal.h); a loop of your own around step() or train_step() should hold a
/// FlushDenormalGuard too.
class Trainer {
 public:
  /// Checks what can be checked before the first step: the loader gives one-hot targets when the default
  /// forward needs them, every batch is large enough for the model to train on (a 1-sample batch with
  /// batch normalisation is an error naming the fix), and the validation data has the training data's sample
  /// size and can be evaluated at the validation batch size (check_evaluation). Names the optimizer's parameters after the model's.
  Trainer(Module& model, Optimizer& optimizer, DataLoader& loader, TrainerOptions options = {});

  Trainer& add_callback(std::shared_ptr<Callback> callback);

  /// on_train_begin, epochs until finished() (or a callback calls stop()), on_train_end; the logs of the
  /// epochs run.
  std::vector<EpochLogs> fit();
  /// The current epoch to its end, or to max_steps or stop(): continues a partial epoch, else starts the next.
  EpochLogs run_epoch();
  /// One step: forward, backward, on_after_backward, optimizer step, on_step_end. A NaN or infinite loss
  /// throws NonFiniteLoss before backward (unless options().on_non_finite is keep_going).
  StepResult step(const Batch& batch);

  /// True when the epochs or steps are done, or stop() was called.
  bool finished() const;
  /// Ends training after the current step.
  void stop() { stop_requested_ = true; }
  bool stop_requested() const { return stop_requested_; }
  /// Optimizer steps taken in all (across resumes).
  int64_t steps_done() const { return optimizer_.iterations(); }
  /// Epochs started so far.
  int64_t epoch() const { return loader_.state().epoch; }

  Module& model() { return model_; }
  Optimizer& optimizer() { return optimizer_; }
  DataLoader& loader() { return loader_; }
  TrainerOptions& options() { return options_; }
  /// The thread count the steps run with: options().threads, or the tuner's latest choice (0 before its first).
  int threads() const;

  /// Writes a training checkpoint atomically: the model's state, the optimizer's slots by parameter name and
  /// its hyperparameters, the step, the loader's position and generator, the model's generators, and
  /// `metadata` (e.g. ModelConfig::to_metadata()).
  void save(const std::string& path, const Metadata& metadata = {}) const;
  /// Continues from a training checkpoint exactly: weights, optimizer slots and step count, data position,
  /// generators, and (in the next fit(), through Callback::load_state) what the callbacks saved. The loader must be configured as it was (batch size, shuffle, seed, data size): throws naming
  /// both values otherwise. Checkpoints of minidl 0.1 are upgraded first (upgrade_checkpoint).
  void resume(Checkpoint checkpoint, const std::string& path);

 private:
  Module& model_;
  Optimizer& optimizer_;
  DataLoader& loader_;
  TrainerOptions options_;
  std::vector<std::shared_ptr<Callback>> callbacks_;
  Batch batch_;
  bool stop_requested_ = false;
  std::unique_ptr<ThreadTuner> tuner_;  // with options_.threads 0, from the first run_epoch
  std::optional<Metadata> resumed_;      // the resumed checkpoint's metadata, for the callbacks' load_state
  std::string resumed_source_;           // "checkpoint 'PATH'", for its errors
};

struct FitOptions {
  int epochs = 1;
  int64_t batch_size = kDefaultBatchSize;
  bool shuffle = true;
  uint64_t seed = 1;               ///< seeds the per-epoch permutations
  double validation_split = 0.0;   ///< the LAST fraction, before shuffling (Keras)
  std::function<void(const EpochLogs&)> on_epoch_end{};
  std::vector<std::shared_ptr<Callback>> callbacks{};
};

/// Keras's fit, through a Trainer: every epoch a fresh seeded permutation, the partial last batch kept — but
/// a last batch too small for the model to train on (1 sample with batch normalisation) is skipped, with a
/// warning.
std::vector<EpochLogs> fit(Module& model, Optimizer& optimizer, const Dataset& data, const FitOptions& options = {});

/// The loader options fit and the minidl command use for a model: a trailing batch smaller than the model can
/// train on is skipped (min_batch_size), and a warning says so when the data leaves one.
LoaderOptions training_loader_options(const Module& model, const Dataset& data, LoaderOptions options);

struct Evaluation {
  double loss = 0.0;
  double accuracy = 0.0;     ///< classification
  double auc = NAN;          ///< binary classification (one sigmoid output): ROC AUC
  bool regression = false;   ///< the data has float targets; then:
  double mae = NAN, rmse = NAN, r2 = NAN;
  /// One number, higher for better: accuracy for classes, R² for float targets.
  double score() const { return regression ? r2 : accuracy; }
  /// What score() is: "accuracy" or "R²".
  const char* score_name() const { return regression ? "R²" : "accuracy"; }
};

/// Throws unless evaluate(model, data, batch_size, batch_statistics) can run: a model that normalises each
/// evaluated batch with its own statistics needs at least two samples in every batch, the last one included.
/// `what` names the setting in the message (e.g. "--eval-batch-size").
void check_evaluation(const Module& model, const Dataset& data, int64_t batch_size, bool batch_statistics,
                      const std::string& what = "the evaluation batch size");

/// Loss and accuracy in inference mode, without building a graph, in file order. (A model that always
/// normalises with batch statistics, like Example 3's, normalises each evaluated batch by itself.)
/// With batch_statistics, the layers that keep moving statistics normalise each evaluated batch with its own
/// statistics instead (Module::use_batch_statistics) while the rest of the model, Dropout included, stays in
/// inference mode; nothing is updated.
/// The loss is `loss`, or default_loss(model) when empty; the metrics follow the data: accuracy (and AUC for one
/// sigmoid output) for classes, MAE, RMSE and R² for float targets.
/// With a `world` of several processes (every one calling it alike), each forwards its share of the batches and
/// they exchange the outputs: every process gets the one-process result, bit for bit, in 1/N of the time.
/// The loss compares with targets smoothed by `label_smoothing` (smooth_labels), as a run trained with it reports.
Evaluation evaluate(Module& model, const Dataset& data, int64_t batch_size = kDefaultBatchSize, bool batch_statistics = false,
                    std::optional<Loss> loss = std::nullopt, Communicator* world = nullptr, float label_smoothing = 0.0f);
/// Throws unless `loss` can train `model` on `data`: a classification loss needs class labels (binary: one
/// output, two classes), a regression loss float targets as wide as the model's output. `what` names the source.
void check_loss(Loss loss, const Module& model, const Dataset& data, const std::string& what = "Trainer");

/// The model's outputs for x [N, ...] in inference mode, batch by batch, without a graph.
Tensor predict(Module& model, const Tensor& x, int64_t batch_size = kDefaultBatchSize);

/// Sets a module's batch-statistics flag (Module::use_batch_statistics) for a scope and restores it after.
class BatchStatisticsGuard {
 public:
  BatchStatisticsGuard(Module& module, bool on) : module_(module), previous_(module.uses_batch_statistics()) {
    module.use_batch_statistics(on);
  }
  ~BatchStatisticsGuard() { module_.use_batch_statistics(previous_); }
  BatchStatisticsGuard(const BatchStatisticsGuard&) = delete;
  BatchStatisticsGuard& operator=(const BatchStatisticsGuard&) = delete;

 private:
  Module& module_;
  bool previous_;
};

/// Sets a module's training flag for a scope and restores it after.
class ModeGuard {
 public:
  ModeGuard(Module& module, bool training) : module_(module), previous_(module.is_training()) { module.train(training); }
  ~ModeGuard() { module_.train(previous_); }
  ModeGuard(const ModeGuard&) = delete;
  ModeGuard& operator=(const ModeGuard&) = delete;

 private:
  Module& module_;
  bool previous_;
};

}  // namespace minidl
