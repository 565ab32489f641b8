// Callbacks for the Trainer, as Keras's: a progress bar, checkpoints, early stopping, learning-rate
// schedules, a clean stop on SIGINT/SIGTERM, data parallelism, and one made of lambdas.
#pragma once

#include <functional>
#include <span>
#include <string>
#include <vector>

#include "minidl/distributed.h"
#include "minidl/train.h"

namespace minidl {

/// A one-line progress bar on stderr while an epoch runs: batches done, running loss and accuracy, steps per
/// second, time left. Draws only when stderr is a terminal, at most ten times a second.
class ProgressBar : public Callback {
 public:
  /// `label` goes before "epoch 3/5" (e.g. the mode when several runs share a terminal).
  explicit ProgressBar(std::string label = {});
  void on_epoch_begin(Trainer& trainer) override;
  void on_step_end(Trainer& trainer, const StepResult& step) override;
  void on_epoch_end(Trainer& trainer, const EpochLogs& logs) override;

 private:
  std::string label_, prefix_;
  bool active_;
  double start_ = 0.0, last_draw_ = -1.0, loss_sum_ = 0.0;
  int64_t correct_ = 0, samples_ = 0, steps_ = 0;
};

/// Writes a training checkpoint (Trainer::save) after every epoch, and at the end of training when the file
/// does not yet hold the final step — so a run of zero steps, or a resumed run that was already finished,
/// still writes its file.
class ModelCheckpoint : public Callback {
 public:
  explicit ModelCheckpoint(std::string path, Metadata metadata = {});
  void on_epoch_end(Trainer& trainer, const EpochLogs& logs) override;
  void on_train_end(Trainer& trainer) override;
  /// The step the file holds, or -1 while nothing was written.
  int64_t saved_step() const { return saved_step_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  Metadata metadata_;
  int64_t saved_step_ = -1;
};

struct EarlyStoppingOptions {
  std::string monitor = "val_loss";  ///< loss, accuracy, val_loss or val_accuracy
  double min_delta = 0.0;            ///< a smaller change is no improvement
  int patience = 0;                  ///< stop after this many epochs without improvement (at least one)
  bool restore_best_weights = false; ///< put back the weights of the best epoch when stopping
};

/// Keras's EarlyStopping: stops training when the monitored value has not improved for `patience` epochs
/// (accuracies improve upwards, losses downwards).
class EarlyStopping : public Callback {
 public:
  explicit EarlyStopping(EarlyStoppingOptions options = {});
  void on_train_begin(Trainer& trainer) override;
  void on_epoch_end(Trainer& trainer, const EpochLogs& logs) override;
  void on_train_end(Trainer& trainer) override;
  /// The best value, the epochs waited since it and the stopped epoch go into the checkpoint (early_stopping.*),
  /// so a resumed run counts its patience on; a run that had stopped stays stopped unless resumed with more
  /// patience. The best weights are not saved: after a resume, restore_best_weights restores the best epoch
  /// since the resume (and warns when the best one came before it).
  void save_state(const Trainer& trainer, Metadata& metadata) const override;
  void load_state(Trainer& trainer, const MetadataReader& metadata) override;
  /// The epoch training stopped after, or 0 when it ran to the end.
  int stopped_epoch() const { return stopped_epoch_; }
  /// The best value of the monitored quantity so far (NaN before the first epoch).
  double best() const { return have_best_ ? best_ : NAN; }

 private:
  EarlyStoppingOptions options_;
  double best_ = 0.0;
  int wait_ = 0, stopped_epoch_ = 0;
  bool have_best_ = false;
  bool resumed_best_ = false;  // the best value came from a resumed checkpoint (its weights are not kept)
  std::vector<Tensor> best_weights_;
};

/// Keras's LearningRateScheduler: at the start of every epoch the learning rate becomes
/// schedule(epoch, current learning rate), epoch counted from 0.
class LearningRateScheduler : public Callback {
 public:
  explicit LearningRateScheduler(std::function<float(int epoch, float lr)> schedule);
  void on_epoch_begin(Trainer& trainer) override;

 private:
  std::function<float(int, float)> schedule_;
};

/// Keras's CosineDecay schedule (keras.optimizers.schedules), set before every optimizer step: step t (the
/// steps done before it, counted from 0) trains with
///   initial · ((1 − alpha) · ½ · (1 + cos(π · min(t, decay_steps) / decay_steps)) + alpha).
/// With a warmup_target (Keras 3's warmup_target and warmup_steps, W of them), the rate first rises linearly
/// from initial to the target, initial + (target − initial) · t / W for t < W, then decays from the target:
/// target · ((1 − alpha) · ½ · (1 + cos(π · min(t − W, decay_steps) / decay_steps)) + alpha).
class CosineDecay : public Callback {
 public:
  CosineDecay(float initial_learning_rate, int64_t decay_steps, float alpha = 0.0f);
  CosineDecay(float initial_learning_rate, int64_t decay_steps, float alpha, float warmup_target, int64_t warmup_steps);
  void on_after_backward(Trainer& trainer) override;
  /// The learning rate of step t.
  float learning_rate(int64_t step) const;

 private:
  double initial_, alpha_;
  int64_t decay_steps_;
  double warmup_target_ = NAN;  // NaN: no warm-up (Keras's None)
  int64_t warmup_steps_ = 0;
};

/// A linear warm-up to a constant learning rate, set before every optimizer step: step t (from 0) trains with
/// target · t / warmup_steps while t < warmup_steps, then with target (Keras's CosineDecay warm-up from 0,
/// without the decay; Goyal et al. 2017's gradual warm-up).
class LinearWarmup : public Callback {
 public:
  LinearWarmup(float target, int64_t warmup_steps);
  void on_after_backward(Trainer& trainer) override;
  float learning_rate(int64_t step) const;

 private:
  double target_;
  int64_t warmup_steps_;
};

/// Gradient clipping by the global norm, Keras's global_clipnorm (tf.clip_by_global_norm; PyTorch's
/// clip_grad_norm_): between backward and the optimizer step, with ‖g‖ the Euclidean norm of every trainable
/// parameter's gradient taken together, each gradient becomes g · clip_norm / max(‖g‖, clip_norm) — unchanged
/// while ‖g‖ <= clip_norm. The norm is summed in double in parameter order, so the same bits for any thread count.
/// Added after AllReduceGradients, it clips the averaged gradient (the same on every process).
class ClipGradientNorm : public Callback {
 public:
  explicit ClipGradientNorm(float clip_norm);
  void on_after_backward(Trainer& trainer) override;
  /// The global norm of the last step's gradients, before clipping.
  double last_norm() const { return last_norm_; }

 private:
  float clip_norm_;
  double last_norm_ = 0.0;
  std::vector<Tensor> grads_;  // this step's gradients (the vector keeps its capacity: no allocation per step)
};

/// Stops training cleanly on SIGINT or SIGTERM: the step under way finishes, then the Trainer stops (no
/// validation of the partial epoch), so a ModelCheckpoint added to the same Trainer writes a checkpoint that
/// resumes exactly. A second signal ends the process at once, by the signal's default action. The handlers are
/// installed in on_train_begin and the previous ones restored in on_train_end; one StopOnSignal may be active
/// at a time.
class StopOnSignal : public Callback {
 public:
  StopOnSignal() = default;
  StopOnSignal(const StopOnSignal&) = delete;
  StopOnSignal& operator=(const StopOnSignal&) = delete;
  ~StopOnSignal() override;
  void on_train_begin(Trainer& trainer) override;
  void on_step_end(Trainer& trainer, const StepResult& step) override;
  void on_epoch_end(Trainer& trainer, const EpochLogs& logs) override;
  void on_train_end(Trainer& trainer) override;
  /// The signal that stopped training (SIGINT, SIGTERM), or 0.
  int signal() const { return signal_; }

 private:
  void restore();
  int signal_ = 0;
  bool installed_ = false;
};

/// Wu & Johnson's FrozenBN ("Rethinking 'Batch' in BatchNorm", 2021): for the last `last_epochs` epochs of
/// training, every BatchNormalization in the model normalises with its moving statistics and stops updating
/// them, while gamma and beta go on learning — training then sees what inference will. Set at each epoch's
/// start from the epoch number, so a resumed run freezes where the uninterrupted one would.
class FreezeBatchNormStatistics : public Callback {
 public:
  explicit FreezeBatchNormStatistics(int last_epochs);
  void on_epoch_begin(Trainer& trainer) override;

 private:
  int last_epochs_;
};

/// Sets BatchNormalization::freeze_statistics on every BatchNormalization in `model`; returns how many there are.
int freeze_batch_norm_statistics(Module& model, bool frozen);

/// Data parallelism (docs/distributed.md): between backward and the optimizer step, averages every trainable
/// parameter's gradient over `world`'s processes — packed into one contiguous buffer, one sum (Horovod's tensor
/// fusion; the buffer is Communicator::reduction_buffer, shared memory when the processes share a machine). Each
/// process's loss is the mean over its equal slice of the global batch, so the average is the gradient of the
/// global batch's mean loss. At each epoch's end it checks that every process holds the same parameters, bit for
/// bit, and throws if not. Does nothing in a world of one.
class AllReduceGradients : public Callback {
 public:
  explicit AllReduceGradients(Communicator& world) : world_(world) {}
  void on_train_begin(Trainer& trainer) override;
  void on_after_backward(Trainer& trainer) override;
  void on_epoch_end(Trainer& trainer, const EpochLogs& logs) override;

 private:
  Communicator& world_;
  std::vector<Tensor> parameters_;       // the model's trainable parameters, taken once per fit
  int64_t total_ = 0;                    // their elements
  std::vector<std::span<float>> grads_;  // where the averaged gradients go, rebuilt each step
};

/// A callback made of functions (Keras's LambdaCallback); unset ones do nothing.
struct LambdaCallback : Callback {
  std::function<void(Trainer&)> train_begin, epoch_begin, after_backward, train_end;
  std::function<void(Trainer&, const StepResult&)> step_end;
  std::function<void(Trainer&, const EpochLogs&)> epoch_end;
  std::function<void(Trainer&, const ThreadChoice&)> threads_chosen;

  void on_train_begin(Trainer& t) override { if (train_begin) train_begin(t); }
  void on_epoch_begin(Trainer& t) override { if (epoch_begin) epoch_begin(t); }
  void on_after_backward(Trainer& t) override { if (after_backward) after_backward(t); }
  void on_step_end(Trainer& t, const StepResult& s) override { if (step_end) step_end(t, s); }
  void on_epoch_end(Trainer& t, const EpochLogs& l) override { if (epoch_end) epoch_end(t, l); }
  void on_train_end(Trainer& t) override { if (train_end) train_end(t); }
  void on_threads_chosen(Trainer& t, const ThreadChoice& c) override { if (threads_chosen) threads_chosen(t, c); }
};

}  // namespace minidl
