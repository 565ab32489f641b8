// The layers: Dense, ReLU, Softmax, Dropout, Keras-exact BatchNormalization and the document's Example 3
// normalisation (moments + batch_normalization) as a layer.
#pragma once

#include <algorithm>
#include <cmath>

#include "minidl/losses.h"
#include "minidl/module.h"
#include "minidl/random.h"

namespace minidl {

class Communicator;

enum class Activation { none, relu, softmax };

/// Keras Dense: kernel [in, units] (glorot_uniform), bias zeros, y = activation(x·kernel + bias).
class Dense : public Module {
 public:
  Dense(int64_t in_features, int64_t units, Activation activation = Activation::none,
        Generator& gen = default_generator(), std::string name = {});
  Tensor forward(const Tensor& x) override;
  Shape output_shape(const Shape& input) const override;
  double product_flops(const Shape& input) const override;
  std::string export_onnx(OnnxGraph& graph, const std::string& input, const Shape& input_shape) const override;
  std::string type_name() const override { return "Dense"; }
  Tensor& kernel() { return kernel_; }
  Tensor& bias() { return bias_; }
  Activation activation() const { return activation_; }

 private:
  int64_t in_features_, units_;
  Activation activation_;
  Tensor kernel_, bias_;
};

class ReLU : public Module {
 public:
  explicit ReLU(std::string name = {}) : Module(std::move(name)) {}
  Tensor forward(const Tensor& x) override;
  std::string export_onnx(OnnxGraph& graph, const std::string& input, const Shape& input_shape) const override;
  std::string type_name() const override { return "ReLU"; }
};

/// Softmax over the last axis.
class Softmax : public Module {
 public:
  explicit Softmax(std::string name = {}) : Module(std::move(name)) {}
  Tensor forward(const Tensor& x) override;
  std::string export_onnx(OnnxGraph& graph, const std::string& input, const Shape& input_shape) const override;
  std::string type_name() const override { return "Softmax"; }
};

/// The logistic sigmoid 1 / (1 + e^−x), elementwise: a binary classifier's output (binary cross-entropy then
/// takes the stable logits path).
class Sigmoid : public Module {
 public:
  explicit Sigmoid(std::string name = {}) : Module(std::move(name)) {}
  Tensor forward(const Tensor& x) override;
  std::string export_onnx(OnnxGraph& graph, const std::string& input, const Shape& input_shape) const override;
  std::string type_name() const override { return "Sigmoid"; }
};

/// tanh, elementwise (Keras's Activation("tanh")).
class Tanh : public Module {
 public:
  explicit Tanh(std::string name = {}) : Module(std::move(name)) {}
  Tensor forward(const Tensor& x) override;
  std::string export_onnx(OnnxGraph& graph, const std::string& input, const Shape& input_shape) const override;
  std::string type_name() const override { return "Tanh"; }
};

/// The exact GELU x·Φ(x), elementwise (Keras's Activation("gelu"), approximate = False).
class GELU : public Module {
 public:
  explicit GELU(std::string name = {}) : Module(std::move(name)) {}
  Tensor forward(const Tensor& x) override;
  std::string export_onnx(OnnxGraph& graph, const std::string& input, const Shape& input_shape) const override;
  std::string type_name() const override { return "GELU"; }
};

/// SiLU (swish) x·sigmoid(x), elementwise (Keras's Activation("silu")).
class SiLU : public Module {
 public:
  explicit SiLU(std::string name = {}) : Module(std::move(name)) {}
  Tensor forward(const Tensor& x) override;
  std::string export_onnx(OnnxGraph& graph, const std::string& input, const Shape& input_shape) const override;
  std::string type_name() const override { return "SiLU"; }
  std::string default_name() const override { return "silu"; }
};

/// Keras's LeakyReLU: x above 0, alpha·x elsewhere (Keras's default alpha 0.3).
class LeakyReLU : public Module {
 public:
  explicit LeakyReLU(float alpha = 0.3f, std::string name = {});
  Tensor forward(const Tensor& x) override;
  std::string export_onnx(OnnxGraph& graph, const std::string& input, const Shape& input_shape) const override;
  std::string type_name() const override { return "LeakyReLU"; }
  std::string summary_note() const override;
  float alpha() const { return alpha_; }

 private:
  float alpha_;
};

/// Keras Dropout (inverted): in training each element is kept with probability 1 − rate and scaled by
/// 1 / (1 − rate), else set to 0; in inference the identity. The masks come from the layer's own generator,
/// seeded at construction, so a seeded run draws the same masks, and a checkpoint can save where it stands.
class Dropout : public Module {
 public:
  explicit Dropout(float rate, uint64_t seed = 0, std::string name = {});
  Tensor forward(const Tensor& x) override;
  /// Inference form: the identity, so nothing is added.
  std::string export_onnx(OnnxGraph& graph, const std::string& input, const Shape& input_shape) const override;
  std::string type_name() const override { return "Dropout"; }
  float rate() const { return rate_; }
  /// Data parallelism: this process's rows are slice `shard` of `shards` equal slices of the global batch. The
  /// mask is then drawn for the whole global batch, as one process would draw it, and this slice of it kept: N
  /// processes drop what one process drops.
  void set_shard(int shard, int shards);
  /// Data parallelism with slices of any size: the next batches' rows start at row `begin` of a global batch of
  /// `global_rows` (the Trainer sets it each step from the loader's Batch). Overrides set_shard.
  void set_slice(int64_t begin, int64_t global_rows);

 private:
  float rate_;
  Generator generator_;
  int shard_ = 0, shards_ = 1;
  int64_t slice_begin_ = 0, global_rows_ = 0;  // 0 global rows: no slice set
};

/// The base of the normalisation layers: `features` channels on the last axis of every input (of at least
/// `min_rank` axes, the batch axis included) and an epsilon, both checked at construction; output_shape checks the
/// input and returns it.
class Normalization : public Module {
 public:
  Shape output_shape(const Shape& input) const override;
  int64_t features() const { return features_; }
  float epsilon() const { return epsilon_; }

 protected:
  /// `type` names the layer in construction errors (it is not named yet); `word` is what the last axis holds.
  Normalization(const char* type, int64_t features, float epsilon, std::string name, int min_rank = 2,
                const char* word = "features");
  /// The smallest batch whose statistics over every axis but the last are not a single value per channel: 1 for
  /// an input whose samples hold several positions (an image's H·W), else 2.
  int64_t min_batch_for_statistics(const Shape& input) const;
  const int64_t features_;
  const float epsilon_;

 private:
  int min_rank_;
  const char* word_;
};

struct BatchNormalizationOptions {
  /// Keras convention: the weight kept on the OLD moving value,
  ///   moving = moving·momentum + batch·(1 − momentum).
  /// PyTorch's momentum is the weight on the NEW value: torch momentum = 1 − Keras momentum (0.99 ↔ 0.01).
  float momentum = 0.99f;
  float epsilon = 1e-3f;  ///< Added to the variance inside the square root.
  bool center = true;     ///< Learn beta.
  bool scale = true;      ///< Learn gamma.
  /// Ghost batch normalisation (tf.keras 2.x): 0 for none, else training batches are split into ghost batches
  /// of this many samples, each normalised with its own statistics. As Keras, the batch is read as
  /// [virtual_batch_size, B / virtual_batch_size, ...]: ghost batch j holds samples j, j + B/V, j + 2B/V, ...;
  /// the moving statistics take one update per step from the mean of the ghost means and of the ghost variances.
  /// The training batch must be a multiple of it.
  int64_t virtual_batch_size = 0;
  /// Batch renormalisation (tf.keras 2.x renorm): in training y = γ·(r·x̂ + d) + β with r = σ_B / σ_R and
  /// d = (μ_B − μ_R) / σ_R, both clipped and held constant in the gradient, where μ_R and σ_R are moving
  /// averages (renorm_momentum) of the batch mean and of sqrt(σ²_B + ε). As tf.keras 2.x, the layer then keeps a
  /// moving_stddev (momentum) of sqrt(σ²_B + ε) instead of averaging the variance, and moving_variance =
  /// max(moving_stddev² − ε, 0). Inference uses moving_mean and moving_variance as without renorm.
  bool renorm = false;
  float renorm_momentum = 0.99f;
  /// renorm_clipping: r within [rmin, rmax], d within [−dmax, dmax]; NaN leaves that side unclipped (Keras's
  /// default: no clipping). rmax must be ≥ 1, rmin in (0, 1], dmax ≥ 0.
  float rmax = NAN, rmin = NAN, dmax = NAN;
  /// FrozenBN (Wu & Johnson 2021): for the last `freeze_epochs` epochs of a Trainer's run the statistics are
  /// frozen (freeze_statistics), set at each epoch's start (Module::on_epoch_begin); 0: never.
  int64_t freeze_epochs = 0;
};

/// Keras BatchNormalization over the last axis (docs/keras.md §1). Training mode: batch mean and biased variance, the
/// moving statistics updated as a side effect of forward; inference mode (or trainable = false): the
/// moving statistics, untouched. momentum = 0 leaves the moving statistics equal to the last training batch's.
class BatchNormalization : public Normalization {
 public:
  explicit BatchNormalization(int64_t features, BatchNormalizationOptions options = {},
                              std::string name = {});
  Tensor forward(const Tensor& x) override;
  int64_t min_training_batch(const Shape& input) const override;
  int64_t min_batch_statistics_batch(const Shape& input) const override;
  std::string export_onnx(OnnxGraph& graph, const std::string& input, const Shape& input_shape) const override;
  std::string type_name() const override { return "BatchNormalization"; }
  void on_epoch_begin(int64_t epoch, int64_t epochs) override;
  void complete_state(std::map<std::string, Tensor>& state, const std::string& prefix) const override;
  std::string summary_note() const override;
  const BatchNormalizationOptions& options() const { return options_; }
  Tensor& gamma() { return gamma_; }  ///< Undefined when scale is false.
  Tensor& beta() { return beta_; }    ///< Undefined when center is false.
  Tensor& moving_mean() { return moving_mean_; }
  Tensor& moving_variance() { return moving_variance_; }
  /// Renorm's moving average of sqrt(σ²_B + ε), from which moving_variance follows (undefined without renorm).
  Tensor& moving_stddev() { return moving_stddev_; }
  /// Renorm's moving μ_R and σ_R (undefined without renorm).
  Tensor& renorm_mean() { return renorm_mean_; }
  Tensor& renorm_stddev() { return renorm_stddev_; }
  /// Frozen statistics (Wu & Johnson 2021, "FrozenBN"): training normalises with the moving statistics and leaves
  /// them alone, while gamma and beta still learn — unlike trainable = false, which freezes those too.
  void freeze_statistics(bool frozen) { statistics_frozen_ = frozen; }
  bool statistics_frozen() const { return statistics_frozen_; }
  int64_t training_batch_multiple() const override { return std::max<int64_t>(options_.virtual_batch_size, 1); }
  /// Synchronised batch normalisation (Keras's synchronized=True) over `world`'s processes: training statistics
  /// from the global batch, so every process holds the same moving statistics; nullptr: each process's own batch.
  void synchronize(Communicator* world) { world_ = world; }
  Communicator* synchronized_with() const { return world_; }

 private:
  Tensor normalize_batch(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor& mean, Tensor& variance);
  Tensor renormalize(const Tensor& xhat, const Tensor& mean, const Tensor& variance);
  BatchNormalizationOptions options_;
  Tensor gamma_, beta_, moving_mean_, moving_variance_, moving_stddev_, renorm_mean_, renorm_stddev_;
  bool statistics_frozen_ = false;
  Communicator* world_ = nullptr;
};

/// Keras LayerNormalization (axis = -1): each position of each sample normalised over its last axis with its own
/// mean and biased variance, y = γ·(x − μ)/sqrt(σ² + ε) + β (γ, β over the last axis). The same in training and
/// inference: no batch statistics, no moving statistics.
class LayerNormalization : public Normalization {
 public:
  explicit LayerNormalization(int64_t features, float epsilon = 1e-3f, std::string name = {});
  Tensor forward(const Tensor& x) override;
  std::string export_onnx(OnnxGraph& graph, const std::string& input, const Shape& input_shape) const override;
  std::string type_name() const override { return "LayerNormalization"; }
  Tensor& gamma() { return gamma_; }
  Tensor& beta() { return beta_; }

 private:
  Tensor gamma_, beta_;
};

/// Keras GroupNormalization (axis = -1): each sample's channels split into `groups` consecutive groups, each
/// normalised with the mean and biased variance of its channels over every position (H·W·C/groups values for an
/// image), then γ and β per channel. groups = 1 is LayerNormalization over a whole image; groups = channels is
/// instance normalisation. Keras's default is 32 groups.
class GroupNormalization : public Normalization {
 public:
  static constexpr int64_t kDefaultGroups = 32;  ///< Keras's
  GroupNormalization(int64_t channels, int64_t groups = kDefaultGroups, float epsilon = 1e-3f, std::string name = {});
  Tensor forward(const Tensor& x) override;
  std::string export_onnx(OnnxGraph& graph, const std::string& input, const Shape& input_shape) const override;
  std::string type_name() const override { return "GroupNormalization"; }
  int64_t groups() const { return groups_; }
  Tensor& gamma() { return gamma_; }
  Tensor& beta() { return beta_; }

 private:
  int64_t groups_;
  Tensor gamma_, beta_;
};

/// Keras RMSNormalization (axis = -1, Keras 3): each position of each sample scaled by the root mean square of its
/// last axis, y = x / sqrt(mean(x²) + ε) · scale, with a learned `scale` (ones) and no offset. The same in
/// training and inference. Keras's default epsilon is 1e-6.
class RMSNormalization : public Normalization {
 public:
  explicit RMSNormalization(int64_t features, float epsilon = 1e-6f, std::string name = {});
  Tensor forward(const Tensor& x) override;
  std::string export_onnx(OnnxGraph& graph, const std::string& input, const Shape& input_shape) const override;
  std::string type_name() const override { return "RMSNormalization"; }
  Tensor& scale() { return scale_; }

 private:
  Tensor scale_;
};

/// Keras's Normalization preprocessing layer (axis = -1): y = (x − mean) / max(sqrt(variance), 1e-7) per
/// feature (or channel), with mean and variance adapted from the training data before the first step (adapt,
/// or adapt_normalization for a model) and kept as buffers, so a checkpoint holds them. Nothing is learned;
/// the same in training and inference. A layer never adapted refuses to run.
class FeatureNormalization : public Normalization {
 public:
  explicit FeatureNormalization(int64_t features, std::string name = {});
  Tensor forward(const Tensor& x) override;
  std::string export_onnx(OnnxGraph& graph, const std::string& input, const Shape& input_shape) const override;
  std::string type_name() const override { return "Normalization"; }
  /// What adapt reads: per-feature moments over the batches added, so that data too large for one tensor adapts
  /// batch by batch.
  using Accumulator = ColumnMoments;
  /// Sets mean and variance (population, Keras's) from x [..., features], over every axis but the last.
  void adapt(const Tensor& x);
  /// Sets them from what an accumulator gathered.
  void adapt(const Accumulator& statistics);
  bool adapted() const { return count_.data()[0] > 0.0f; }
  const Tensor& mean() const { return mean_; }
  const Tensor& variance() const { return variance_; }

 private:
  Tensor mean_, variance_, count_;
};

/// The document's Example 3 as a layer: always normalises with the statistics of the batch it is given,
/// through tf.nn.moments over axis 0 and tf.nn.batch_normalization with learned beta and gamma; autodiff
/// differentiates through the statistics. No moving statistics, so evaluation also uses batch statistics.
class MomentsNormalization : public Normalization {
 public:
  explicit MomentsNormalization(int64_t features, float epsilon = 1e-3f,
                                std::string name = {});
  Tensor forward(const Tensor& x) override;
  int64_t min_training_batch(const Shape& input) const override;
  /// As in training: it normalises every batch it is given with that batch's statistics.
  int64_t min_inference_batch(const Shape& input) const override { return min_training_batch(input); }
  /// Refuses: it always normalises with the statistics of the batch it is given, so it has no inference form.
  std::string export_onnx(OnnxGraph& graph, const std::string& input, const Shape& input_shape) const override;
  std::string type_name() const override { return "MomentsNormalization"; }
  /// Named like the BatchNormalization it stands in for, so the three modes share tensor names.
  std::string default_name() const override { return "batch_normalization"; }
  Tensor& gamma() { return gamma_; }
  Tensor& beta() { return beta_; }
  /// Moments over the global batch of `world`'s processes (all_reduce_sum), or nullptr for this process's own.
  void synchronize(Communicator* world) { world_ = world; }
  Communicator* synchronized_with() const { return world_; }

 private:
  Tensor gamma_, beta_;
  Communicator* world_ = nullptr;
};

/// Synchronises (world) or unsynchronises (nullptr) every BatchNormalization and MomentsNormalization in `model`;
/// returns how many there are: `minidl train --bn-sync global` under mpirun.
int synchronize_batch_norm(Module& model, Communicator* world);
/// While it lives, no BatchNormalization or moments layer of `model` synchronises: each normalises the batch it is
/// given by itself (a process evaluating its own share of a data set). Restores each layer's communicator after.
class UnsynchronizedScope {
 public:
  explicit UnsynchronizedScope(Module& model);
  ~UnsynchronizedScope();
  UnsynchronizedScope(const UnsynchronizedScope&) = delete;
  UnsynchronizedScope& operator=(const UnsynchronizedScope&) = delete;

 private:
  std::vector<std::pair<BatchNormalization*, Communicator*>> batch_norms_;
  std::vector<std::pair<MomentsNormalization*, Communicator*>> moments_;
};
/// Tells every Dropout in `model` which slice of the global batch this process holds (Dropout::set_shard);
/// returns how many there are.
int shard_dropout(Module& model, int shard, int shards);
/// Tells every Dropout in `model` where this process's slice of the global batch starts (Dropout::set_slice).
int slice_dropout(Module& model, int64_t begin, int64_t global_rows);

}  // namespace minidl
