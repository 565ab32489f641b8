// A training session of the document's model: configuration, model, Adam, loader and counters, with
// checkpoints that resume exactly. Shared by `minidl train`, `compare` and `evaluate`.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "minidl/checkpoint.h"
#include "minidl/data.h"
#include "minidl/models.h"
#include "minidl/optim.h"
#include "minidl/train.h"

namespace minidl::cli {

struct TrainConfig {
  NormMode mode = NormMode::running;
  int epochs = 5;
  int64_t batch_size = 32;
  float learning_rate = 1e-3f;
  int64_t hidden = 64;
  std::optional<float> momentum;  ///< default: 0.99 (running), 0 (batchwise)
  float epsilon = 1e-3f;
  uint64_t seed = 1;
  bool shuffle = true;
  int64_t max_steps = -1;        ///< stop after this many optimizer steps in all (-1: no limit)
  int64_t eval_batch_size = 32;  ///< for the per-epoch test evaluation

  /// The configuration as safetensors metadata (strings), and back.
  std::map<std::string, std::string> to_metadata() const;
  static TrainConfig from_metadata(const std::map<std::string, std::string>& metadata, const std::string& path);
  DocumentModelOptions model_options() const;
};

/// Progress within an epoch: (batches done, batches in the epoch, running loss, running accuracy).
using ProgressFn = std::function<void(int64_t, int64_t, double, double)>;

class TrainingSession {
 public:
  TrainingSession(const TrainConfig& config, const Dataset& train);

  /// Loads weights (and moving statistics) from a file holding the model's tensors (e.g. another tool's).
  void init_weights(const Checkpoint& checkpoint, const std::string& path);
  /// Restores weights, optimizer state, step count and data position: training continues exactly.
  void resume(const Checkpoint& checkpoint, const std::string& path);

  /// True when the configured epochs or steps are done.
  bool finished() const;
  /// Trains until the end of the current epoch (or the step limit). Loss and accuracy are means over the
  /// steps run in this call, weighted by batch size; seconds is the training loop alone.
  EpochLogs run_epoch(const ProgressFn& progress = {});
  /// Writes model, optimizer and position to a safetensors file, atomically.
  void save(const std::string& path) const;

  Sequential& model() { return *model_; }
  const TrainConfig& config() const { return config_; }
  int64_t step() const { return optimizer_->iterations(); }
  int64_t epoch() const { return loader_.state().epoch; }

 private:
  TrainConfig config_;
  std::shared_ptr<Sequential> model_;
  std::unique_ptr<Adam> optimizer_;
  DataLoader loader_;
  Batch batch_;
};

/// Builds the model a checkpoint describes (its metadata) and loads its tensors, for evaluation.
std::shared_ptr<Sequential> load_model(const std::string& path, TrainConfig* config = nullptr);

/// Loads MNIST-format data, logging where from.
DatasetSplits load_data(const std::string& dir);

}  // namespace minidl::cli
