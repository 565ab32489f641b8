// Training loops built from the public pieces: one step, Keras-style fit / evaluate / predict.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "minidl/data.h"
#include "minidl/module.h"
#include "minidl/optim.h"

namespace minidl {

/// What one training step saw, measured in training mode before the update (as Keras logs it).
struct StepResult {
  double loss = 0.0;
  int64_t correct = 0;
  int64_t samples = 0;
};

/// The loop body a user would write: training-mode forward, categorical cross-entropy against the batch's
/// one-hot targets, backward, optimizer step.
StepResult train_step(Module& model, Optimizer& optimizer, const Batch& batch);

struct EpochLogs {
  int epoch = 0;            ///< 1-based
  double loss = 0.0;        ///< batch-size-weighted mean over the epoch
  double accuracy = 0.0;
  int64_t steps = 0;
  double seconds = 0.0;     ///< the training loop of this epoch alone
  double val_loss = 0.0, val_accuracy = 0.0;  ///< when a validation split is set
};

struct FitOptions {
  int epochs = 1;
  int64_t batch_size = 32;
  bool shuffle = true;
  uint64_t seed = 1;               ///< seeds the per-epoch permutations
  double validation_split = 0.0;   ///< the LAST fraction, before shuffling (Keras)
  std::function<void(const EpochLogs&)> on_epoch_end{};
};

/// Keras's fit: every epoch a fresh seeded permutation, the partial last batch kept, train_step on each batch.
std::vector<EpochLogs> fit(Module& model, Optimizer& optimizer, const Dataset& data, const FitOptions& options = {});

struct Evaluation {
  double loss = 0.0;
  double accuracy = 0.0;
};

/// Loss and accuracy in inference mode, without building a graph, in file order. (A model that always
/// normalises with batch statistics, like Example 3's, normalises each evaluated batch by itself.)
/// With batch_statistics, BatchNormalization normalises each evaluated batch with its own statistics
/// (training mode) instead; the moving statistics are restored afterwards, so nothing changes.
Evaluation evaluate(Module& model, const Dataset& data, int64_t batch_size = 32, bool batch_statistics = false);

/// The model's outputs for x [N, features] in inference mode, batch by batch, without a graph.
Tensor predict(Module& model, const Tensor& x, int64_t batch_size = 32);

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
