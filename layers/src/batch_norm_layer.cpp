// The Keras BatchNormalization layer: batch statistics and their moving averages, and the tf.keras 2.x
// variants it carries — ghost batches (virtual_batch_size), batch renormalisation (renorm) — plus frozen
// statistics (Wu & Johnson's FrozenBN). The kernels are in batch_norm.cpp.
#include <cmath>
#include <iomanip>
#include <sstream>
#include <vector>

#include "minidl/conv_layers.h"
#include "minidl/distributed.h"
#include "minidl/functional.h"
#include "minidl/layers.h"
#include "minidl/onnx.h"
#include "minidl/ops.h"

namespace minidl {
namespace {
// moving = moving·momentum + value·(1 − momentum), per channel (docs/keras.md §1).
void update_moving(Tensor& moving, const float* value, float momentum) {
  float* m = moving.data();
  for (int64_t k = 0; k < moving.numel(); ++k) m[k] = m[k] * momentum + value[k] * (1.0f - momentum);
}

// [C] repeated `times` times → [times·C], differentiable (the gradient sums the copies).
Tensor tiled(const Tensor& t, int64_t times) {
  if (!t.defined()) return t;
  return reshape(reshape(t, {1, t.numel()}) * Tensor::ones({times, 1}), {times * t.numel()});
}
}  // namespace

BatchNormalization::BatchNormalization(int64_t features, BatchNormalizationOptions options, std::string name)
    : Normalization("BatchNormalization", features, options.epsilon, std::move(name), 1), options_(options) {
  const std::string layer = "BatchNormalization '" + this->name() + "'";
  if (!(options.momentum >= 0.0f && options.momentum <= 1.0f))
    fail(layer, ": momentum must be in [0, 1], got ", options.momentum,
         " (Keras convention: weight on the old moving value; PyTorch's 0.1 is Keras's 0.9)");
  if (options.virtual_batch_size < 0)
    fail(layer, ": virtual_batch_size must be >= 1 (or 0 for none), got ", options.virtual_batch_size);
  const bool clipped = !std::isnan(options.rmax) || !std::isnan(options.rmin) || !std::isnan(options.dmax);
  if (clipped && !options.renorm) fail(layer, ": renorm clipping (rmax, rmin, dmax) is given but renorm is off");
  if (!(options.renorm_momentum >= 0.0f && options.renorm_momentum <= 1.0f))
    fail(layer, ": renorm_momentum must be in [0, 1], got ", options.renorm_momentum);
  if (!std::isnan(options.rmax) && !(options.rmax >= 1.0f))
    fail(layer, ": renorm clipping rmax must be >= 1 (r = 1 is no correction), got ", options.rmax);
  if (!std::isnan(options.rmin) && !(options.rmin > 0.0f && options.rmin <= 1.0f))
    fail(layer, ": renorm clipping rmin must be in (0, 1], got ", options.rmin);
  if (!std::isnan(options.dmax) && !(options.dmax >= 0.0f))
    fail(layer, ": renorm clipping dmax must be >= 0, got ", options.dmax);
  if (options.scale) gamma_ = register_parameter("gamma", Tensor::ones({features}));
  if (options.center) beta_ = register_parameter("beta", Tensor::zeros({features}));
  moving_mean_ = register_buffer("moving_mean", Tensor::zeros({features}));
  moving_variance_ = register_buffer("moving_variance", Tensor::ones({features}));
  if (options.freeze_epochs < 0) fail(layer, ": freeze_epochs must be >= 0, got ", options.freeze_epochs);
  if (options.renorm) {
    // tf.keras 2.x: moving_stddev starts at sqrt(moving_variance's initial 1), without epsilon.
    moving_stddev_ = register_buffer("moving_stddev", Tensor::ones({features}));
    renorm_mean_ = register_buffer("renorm_mean", Tensor::zeros({features}));
    renorm_stddev_ = register_buffer("renorm_stddev", Tensor::ones({features}));
  }
}

int64_t BatchNormalization::min_training_batch(const Shape& input) const {
  // Statistics over every axis but the last: one sample suffices when it holds several positions (an image's
  // H×W), not when it holds one value per channel. A frozen layer uses its moving statistics; ghost batches need
  // a whole ghost batch.
  if (!trainable() || statistics_frozen_) return 1;
  return std::max<int64_t>(min_batch_statistics_batch(input), options_.virtual_batch_size);
}

int64_t BatchNormalization::min_batch_statistics_batch(const Shape& input) const {
  return min_batch_for_statistics(input);
}

void BatchNormalization::on_epoch_begin(int64_t epoch, int64_t epochs) {
  if (options_.freeze_epochs > 0) statistics_frozen_ = epoch > epochs - options_.freeze_epochs;
}

void BatchNormalization::complete_state(std::map<std::string, Tensor>& state, const std::string& prefix) const {
  // Checkpoints written before minidl's renorm kept moving_stddev lack it: derive the stddev their moving
  // variance stands for.
  if (!options_.renorm || state.count(prefix + "moving_stddev") || !state.count(prefix + "moving_variance")) return;
  const Tensor& variance = state.at(prefix + "moving_variance");
  Tensor stddev = Tensor::empty(variance.shape());
  for (int64_t k = 0; k < variance.numel(); ++k) stddev.data()[k] = std::sqrt(variance.data()[k] + options_.epsilon);
  state[prefix + "moving_stddev"] = stddev;
}

std::string BatchNormalization::export_onnx(OnnxGraph& graph, const std::string& input, const Shape& input_shape) const {
  if (input_shape.rank() != 2 && input_shape.rank() != 4)
    fail("BatchNormalization '", name(), "': ONNX export takes [N, C] or images [N, H, W, C], got ", input_shape.str());
  // Inference form: BatchNormalization(X, scale, B, mean, var) with the moving statistics, over ONNX's channel
  // axis 1 ([N, C], or images as [N, C, H, W]). Ghost batches and renorm change only training.
  const Tensor scale = gamma_.defined() ? gamma_ : Tensor::ones({features_});
  const Tensor shift = beta_.defined() ? beta_ : Tensor::zeros({features_});
  const auto normalise = [&](const std::string& x) {
    return graph.node("BatchNormalization",
                      {x, graph.constant(name() + "/gamma", scale), graph.constant(name() + "/beta", shift),
                       graph.constant(name() + "/moving_mean", moving_mean_),
                       graph.constant(name() + "/moving_variance", moving_variance_)},
                      name() + "/normalize", {OnnxAttribute::real("epsilon", options_.epsilon)});
  };
  return input_shape.rank() == 2 ? normalise(input) : export_channels_first(graph, input, name(), normalise);
}

std::string BatchNormalization::summary_note() const {
  std::ostringstream out;
  out << std::setprecision(5);  // 1 − 0.99f is 0.0099999905 in float: show 0.01
  out << "momentum=" << options_.momentum << " (weight on the old moving value; PyTorch momentum="
      << 1.0f - options_.momentum << "), epsilon=" << options_.epsilon;
  if (options_.virtual_batch_size) out << ", virtual_batch_size=" << options_.virtual_batch_size;
  if (options_.renorm) {
    out << ", renorm (renorm_momentum=" << options_.renorm_momentum;
    if (!std::isnan(options_.rmax)) out << ", rmax=" << options_.rmax;
    if (!std::isnan(options_.rmin)) out << ", rmin=" << options_.rmin;
    if (!std::isnan(options_.dmax)) out << ", dmax=" << options_.dmax;
    out << ")";
  }
  if (options_.freeze_epochs) out << ", statistics frozen for the last " << options_.freeze_epochs << " epochs";
  if (statistics_frozen_) out << ", statistics frozen";
  return out.str();
}

Tensor BatchNormalization::normalize_batch(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor& mean,
                                           Tensor& variance) {
  const int64_t v = options_.virtual_batch_size, n = x.size(0);
  const bool synced = world_ && world_->size() > 1;
  if (synced && v)
    fail("BatchNormalization '", name(), "': ghost batches are not synchronised across processes: use --bn-sync local "
         "with virtual_batch_size");
  if (synced) return batch_norm_train_synced(x, gamma, beta, options_.epsilon, *world_, mean, variance);
  if (v == 0) return batch_norm_train(x, gamma, beta, options_.epsilon, mean, variance);
  if (n % v != 0)
    fail("BatchNormalization '", name(), "': a training batch of ", n, " samples does not split into ghost batches of ",
         v, " (virtual_batch_size must divide the batch) — choose a batch size that is a multiple of ", v,
         ", or drop the partial last batch");
  // Keras reads the batch as [V, G, ...] (G = N / V ghost batches): ghost batch j holds samples j, j + G, ....
  // As [V, G, S, C] (S positions per sample) → [V, S, G, C] → V·S rows of G·C columns, the batch kernel
  // normalises each column (j, c) with the statistics of ghost batch j, channel c.
  const int64_t g = n / v, c = features_, s = x.numel() / (n * c);
  const auto columns = [&](const Tensor& t) { return s == 1 ? t : transpose(t, 1, 2); };
  const Tensor rows = reshape(columns(reshape(x, {v, g, s, c})), {v * s, g * c});
  Tensor ghost_mean, ghost_variance;
  const Tensor y = batch_norm_train(rows, tiled(gamma, g), tiled(beta, g), options_.epsilon, ghost_mean, ghost_variance);
  // One moving update per step from the mean over ghost batches of their means and of their variances.
  mean = Tensor::zeros({c});
  variance = Tensor::zeros({c});
  for (int64_t j = 0; j < g; ++j)
    for (int64_t k = 0; k < c; ++k) {
      mean.data()[k] += ghost_mean.data()[j * c + k] / static_cast<float>(g);
      variance.data()[k] += ghost_variance.data()[j * c + k] / static_cast<float>(g);
    }
  return reshape(columns(reshape(y, {v, s, g, c})), x.shape());
}

Tensor BatchNormalization::renormalize(const Tensor& xhat, const Tensor& mean, const Tensor& variance) {
  // r = σ_B / σ_R and d = (μ_B − μ_R) / σ_R from the moving μ_R, σ_R before this step's update, with
  // σ_R kept at least sqrt(ε); clipped; constants to the gradient (tf.keras 2.x _renorm_correction_and_moments).
  const int64_t c = features_;
  Tensor r = Tensor::empty({c}), d = Tensor::empty({c}), stddev = Tensor::empty({c});
  for (int64_t k = 0; k < c; ++k) {
    stddev.data()[k] = std::sqrt(variance.data()[k] + options_.epsilon);
    const float sigma = std::max(renorm_stddev_.data()[k], std::sqrt(options_.epsilon));
    float rk = stddev.data()[k] / sigma, dk = (mean.data()[k] - renorm_mean_.data()[k]) / sigma;
    if (!std::isnan(options_.rmin)) rk = std::max(rk, options_.rmin);
    if (!std::isnan(options_.rmax)) rk = std::min(rk, options_.rmax);
    if (!std::isnan(options_.dmax)) dk = std::min(std::max(dk, -options_.dmax), options_.dmax);
    r.data()[k] = rk;
    d.data()[k] = dk;
  }
  update_moving(renorm_mean_, mean.data(), options_.renorm_momentum);
  update_moving(renorm_stddev_, stddev.data(), options_.renorm_momentum);
  // The inference statistics: moving_stddev averages sqrt(σ²_B + ε) (momentum), and the variance follows from it.
  update_moving(moving_stddev_, stddev.data(), options_.momentum);
  for (int64_t k = 0; k < c; ++k)
    moving_variance_.data()[k] = std::max(moving_stddev_.data()[k] * moving_stddev_.data()[k] - options_.epsilon, 0.0f);
  // γ·(r·x̂ + d) + β = x̂·(γ·r) + (γ·d + β).
  const Tensor scale = gamma_.defined() ? gamma_ * r : r;
  const Tensor shift = gamma_.defined() ? gamma_ * d : d;
  return xhat * scale + (beta_.defined() ? shift + beta_ : shift);
}

Tensor BatchNormalization::forward(const Tensor& x) {
  output_shape(x.shape());
  // Keras: a frozen layer (trainable = false) normalises with its moving statistics even in training; so does one
  // whose statistics alone are frozen, whose gamma and beta still learn.
  const bool batch_statistics = !is_training() && uses_batch_statistics();
  if (!batch_statistics && (!is_training() || !trainable() || statistics_frozen_))
    return batch_norm_inference(x, moving_mean_, moving_variance_, gamma_, beta_, options_.epsilon);
  const int64_t n = x.numel() / features_;
  if (n < 2)
    fail("BatchNormalization '", name(), "': ", batch_statistics ? "normalising with batch statistics" : "a training batch",
         " needs at least 2 samples, got ", n, " (one sample normalises to 0 and the output is just beta) — use a "
         "larger batch, drop the partial last batch, or call eval()");
  Tensor mean, variance, y;
  // Inference with batch statistics: the whole batch by its own statistics, and nothing else — no ghost
  // batches, no renorm correction, no moving update, no other process.
  if (batch_statistics) return batch_norm_train(x, gamma_, beta_, options_.epsilon, mean, variance);
  if (options_.renorm) {  // γ and β come after renorm's correction: normalise to x̂ first
    const Tensor xhat = normalize_batch(x, {}, {}, mean, variance);
    y = renormalize(xhat, mean, variance);  // updates moving_stddev and moving_variance too
  } else {
    y = normalize_batch(x, gamma_, beta_, mean, variance);
    update_moving(moving_variance_, variance.data(), options_.momentum);
  }
  // The moving update is a side effect of the training forward pass (docs/keras.md §1).
  update_moving(moving_mean_, mean.data(), options_.momentum);
  return y;
}

UnsynchronizedScope::UnsynchronizedScope(Module& model) {
  for_each_module<BatchNormalization>(model, [this](BatchNormalization& bn) {
    batch_norms_.emplace_back(&bn, bn.synchronized_with());
    bn.synchronize(nullptr);
  });
  for_each_module<MomentsNormalization>(model, [this](MomentsNormalization& m) {
    moments_.emplace_back(&m, m.synchronized_with());
    m.synchronize(nullptr);
  });
}

UnsynchronizedScope::~UnsynchronizedScope() {
  for (auto& [layer, world] : batch_norms_) layer->synchronize(world);
  for (auto& [layer, world] : moments_) layer->synchronize(world);
}

int synchronize_batch_norm(Module& model, Communicator* world) {
  return for_each_module<BatchNormalization>(model, [world](BatchNormalization& bn) { bn.synchronize(world); }) +
         for_each_module<MomentsNormalization>(model, [world](MomentsNormalization& m) { m.synchronize(world); });
}

}  // namespace minidl
