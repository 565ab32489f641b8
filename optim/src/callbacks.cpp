// The Trainer's stock callbacks: progress bar, checkpoints, early stopping, learning-rate schedule, stop on signal.
#include "minidl/callbacks.h"

#include "minidl/layers.h"

#include <signal.h>
#include <unistd.h>

#include <csignal>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

namespace minidl {
namespace {
double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
}  // namespace

ProgressBar::ProgressBar(std::string label) : label_(std::move(label)), active_(::isatty(STDERR_FILENO)) {}

void ProgressBar::on_epoch_begin(Trainer& trainer) {
  prefix_ = (label_.empty() ? "" : label_ + " ") + "epoch " + std::to_string(trainer.epoch()) + "/" +
            std::to_string(trainer.options().epochs);
  start_ = now();
  last_draw_ = -1.0;
  loss_sum_ = 0.0;
  correct_ = samples_ = steps_ = 0;
}

void ProgressBar::on_step_end(Trainer& trainer, const StepResult& step) {
  loss_sum_ += step.loss * static_cast<double>(step.samples);
  correct_ += step.correct;
  samples_ += step.samples;
  ++steps_;
  if (!active_) return;
  const int64_t done = trainer.loader().state().next_batch, total = trainer.loader().batches_per_epoch();
  const double t = now();
  if (done < total && t - last_draw_ < 0.1) return;  // redraw at most ten times a second
  last_draw_ = t;
  constexpr int kWidth = 24;
  const int filled = total ? static_cast<int>(kWidth * done / total) : kWidth;
  const double rate = static_cast<double>(steps_) / std::max(t - start_, 1e-9);
  std::fprintf(stderr, "\r%s [%-*s] %lld/%lld  loss %.4f  accuracy %.4f  %.0f steps/s  ETA %.0f s ", prefix_.c_str(),
               kWidth, std::string(filled, '=').c_str(), static_cast<long long>(done), static_cast<long long>(total),
               loss_sum_ / static_cast<double>(samples_), static_cast<double>(correct_) / static_cast<double>(samples_),
               rate, rate > 0 ? static_cast<double>(total - done) / rate : 0.0);
  std::fflush(stderr);
}

void ProgressBar::on_epoch_end(Trainer&, const EpochLogs&) {
  if (active_ && last_draw_ >= 0) std::fprintf(stderr, "\r\033[K");
  last_draw_ = -1.0;
}

ModelCheckpoint::ModelCheckpoint(std::string path, Metadata metadata)
    : path_(std::move(path)), metadata_(std::move(metadata)) {}

void ModelCheckpoint::on_epoch_end(Trainer& trainer, const EpochLogs&) {
  trainer.save(path_, metadata_);
  saved_step_ = trainer.steps_done();
}

void ModelCheckpoint::on_train_end(Trainer& trainer) {
  if (saved_step_ == trainer.steps_done()) return;
  trainer.save(path_, metadata_);
  saved_step_ = trainer.steps_done();
}

EarlyStopping::EarlyStopping(EarlyStoppingOptions options) : options_(std::move(options)) {
  const std::string& m = options_.monitor;
  if (m != "loss" && m != "accuracy" && m != "val_loss" && m != "val_accuracy")
    fail("EarlyStopping: unknown monitor '", m, "': choose one of loss, accuracy, val_loss, val_accuracy");
  if (options_.patience < 0) fail("EarlyStopping: patience must be >= 0, got ", options_.patience);
  if (!(options_.min_delta >= 0.0)) fail("EarlyStopping: min_delta must be >= 0, got ", options_.min_delta);
}

void EarlyStopping::on_train_begin(Trainer&) {
  have_best_ = resumed_best_ = false;
  wait_ = stopped_epoch_ = 0;
  best_weights_.clear();
}

void EarlyStopping::on_epoch_end(Trainer& trainer, const EpochLogs& logs) {
  const std::string& m = options_.monitor;
  if (m.rfind("val_", 0) == 0 && !logs.has_validation)
    fail("EarlyStopping: monitor '", m, "' needs validation data (TrainerOptions::validation)");
  const double value = m == "loss" ? logs.loss : m == "accuracy" ? logs.accuracy : m == "val_loss" ? logs.val_loss
                                                                                                   : logs.val_accuracy;
  const double sign = m.find("accuracy") != std::string::npos ? 1.0 : -1.0;  // improvement is upwards for accuracy
  if (!have_best_ || sign * (value - best_) > options_.min_delta) {
    have_best_ = true;
    best_ = value;
    wait_ = 0;
    resumed_best_ = false;
    if (options_.restore_best_weights) {
      best_weights_.clear();
      for (const auto& [name, t] : trainer.model().state()) best_weights_.push_back(t.clone());
    }
    return;
  }
  if (++wait_ >= options_.patience) {  // Keras 3: `wait` counts the epochs since the best one
    stopped_epoch_ = logs.epoch;
    trainer.stop();
  }
}

namespace {
// A double as text that reads back as the same double (the best value must compare exactly after a resume).
std::string double_text(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}
}  // namespace

void EarlyStopping::save_state(const Trainer&, Metadata& m) const {
  m["early_stopping.monitor"] = options_.monitor;
  m["early_stopping.wait"] = std::to_string(wait_);
  m["early_stopping.stopped_epoch"] = std::to_string(stopped_epoch_);
  if (have_best_) m["early_stopping.best"] = double_text(best_);
}

void EarlyStopping::load_state(Trainer& trainer, const MetadataReader& m) {
  // Saved without early stopping, or watching another quantity: the patience starts here.
  if (!m.has("early_stopping.monitor") || m.text("early_stopping.monitor") != options_.monitor) return;
  wait_ = static_cast<int>(m.integer("early_stopping.wait", 0, 1 << 30));
  stopped_epoch_ = static_cast<int>(m.integer("early_stopping.stopped_epoch", 0, 1 << 30));
  have_best_ = m.has("early_stopping.best");
  if (have_best_) best_ = m.number("early_stopping.best", -INFINITY, INFINITY);
  resumed_best_ = have_best_;
  if (stopped_epoch_ && wait_ >= options_.patience) trainer.stop();  // it had stopped, and the patience is the same
  else stopped_epoch_ = 0;
}

void EarlyStopping::on_train_end(Trainer& trainer) {
  if (stopped_epoch_ && options_.restore_best_weights && best_weights_.empty() && resumed_best_)
    warn("EarlyStopping: the best epoch came before the resumed checkpoint, whose weights are not kept: training "
         "ends with the last epoch's weights, not the best ones");
  if (!stopped_epoch_ || !options_.restore_best_weights || best_weights_.empty()) return;
  const NamedTensors live = trainer.model().state();
  for (size_t i = 0; i < live.size(); ++i) Tensor(live[i].second).copy_(best_weights_[i]);
}

LearningRateScheduler::LearningRateScheduler(std::function<float(int, float)> schedule)
    : schedule_(std::move(schedule)) {
  if (!schedule_) fail("LearningRateScheduler: the schedule is empty");
}

void LearningRateScheduler::on_epoch_begin(Trainer& trainer) {
  Optimizer& optimizer = trainer.optimizer();
  optimizer.set_learning_rate(schedule_(static_cast<int>(trainer.epoch()) - 1, optimizer.learning_rate()));
}

CosineDecay::CosineDecay(float initial_learning_rate, int64_t decay_steps, float alpha)
    : initial_(initial_learning_rate), alpha_(alpha), decay_steps_(decay_steps) {
  if (!(initial_learning_rate >= 0.0f) || !std::isfinite(initial_learning_rate))
    fail("CosineDecay: the initial learning rate must be a finite number >= 0, got ", initial_learning_rate);
  if (decay_steps < 1) fail("CosineDecay: decay_steps must be >= 1, got ", decay_steps);
  if (!(alpha >= 0.0f && alpha <= 1.0f)) fail("CosineDecay: alpha must be in [0, 1], got ", alpha);
}

CosineDecay::CosineDecay(float initial_learning_rate, int64_t decay_steps, float alpha, float warmup_target,
                         int64_t warmup_steps)
    : CosineDecay(initial_learning_rate, decay_steps, alpha) {
  if (!(warmup_target >= 0.0f) || !std::isfinite(warmup_target))
    fail("CosineDecay: the warm-up target must be a finite number >= 0, got ", warmup_target);
  if (warmup_steps < 0) fail("CosineDecay: warmup_steps must be >= 0, got ", warmup_steps);
  warmup_target_ = warmup_target;
  warmup_steps_ = warmup_steps;
}

float CosineDecay::learning_rate(int64_t step) const {
  const bool warm_up = !std::isnan(warmup_target_);
  int64_t t = std::max<int64_t>(step, 0);
  if (warm_up && t < warmup_steps_)
    return static_cast<float>(initial_ + (warmup_target_ - initial_) * static_cast<double>(t) /
                                             static_cast<double>(warmup_steps_));
  if (warm_up) t -= warmup_steps_;
  const double done = static_cast<double>(std::min(t, decay_steps_));
  const double cosine = 0.5 * (1.0 + std::cos(M_PI * done / static_cast<double>(decay_steps_)));
  return static_cast<float>((warm_up ? warmup_target_ : initial_) * ((1.0 - alpha_) * cosine + alpha_));
}

LinearWarmup::LinearWarmup(float target, int64_t warmup_steps) : target_(target), warmup_steps_(warmup_steps) {
  if (!(target >= 0.0f) || !std::isfinite(target))
    fail("LinearWarmup: the target learning rate must be a finite number >= 0, got ", target);
  if (warmup_steps < 1) fail("LinearWarmup: warmup_steps must be >= 1, got ", warmup_steps);
}

float LinearWarmup::learning_rate(int64_t step) const {
  const int64_t t = std::max<int64_t>(step, 0);
  if (t >= warmup_steps_) return static_cast<float>(target_);
  return static_cast<float>(target_ * static_cast<double>(t) / static_cast<double>(warmup_steps_));
}

void LinearWarmup::on_after_backward(Trainer& trainer) {
  trainer.optimizer().set_learning_rate(learning_rate(trainer.steps_done()));
}

ClipGradientNorm::ClipGradientNorm(float clip_norm) : clip_norm_(clip_norm) {
  if (!(clip_norm > 0.0f) || !std::isfinite(clip_norm))
    fail("ClipGradientNorm: clip_norm must be a finite number > 0, got ", clip_norm);
}

void ClipGradientNorm::on_after_backward(Trainer& trainer) {
  grads_.clear();
  double squares = 0.0;
  for (const Tensor& p : trainer.model().parameters()) {
    if (!p.grad().defined()) continue;
    const Tensor g = p.grad();
    const float* v = g.data();
    for (int64_t i = 0; i < g.numel(); ++i) squares += static_cast<double>(v[i]) * v[i];
    grads_.push_back(g);
  }
  last_norm_ = std::sqrt(squares);
  if (!std::isfinite(last_norm_)) {
    if (trainer.options().on_non_finite == OnNonFinite::keep_going) return;
    throw NonFiniteLoss(detail::concat("step ", trainer.steps_done() + 1, " (epoch ", trainer.epoch(),
                                       "): the loss is finite but its gradients' global norm is ", last_norm_,
                                       ", so there is nothing to clip them by. The step was not applied."),
                        trainer.steps_done() + 1);
  }
  if (last_norm_ <= clip_norm_) return;
  const float scale = static_cast<float>(static_cast<double>(clip_norm_) / last_norm_);
  for (Tensor& g : grads_) {
    float* v = g.data();
    for (int64_t i = 0; i < g.numel(); ++i) v[i] *= scale;
  }
}

void CosineDecay::on_after_backward(Trainer& trainer) {
  trainer.optimizer().set_learning_rate(learning_rate(trainer.steps_done()));
}

namespace {
// Signal state is process-wide: the handler may only touch a sig_atomic_t and call async-signal-safe functions.
volatile std::sig_atomic_t g_stop_signal = 0;
bool g_installed = false;
struct sigaction g_previous_int {}, g_previous_term {};

extern "C" void on_stop_signal(int sig) {
  if (g_stop_signal != 0) {  // the second one: the default action, at once
    ::signal(sig, SIG_DFL);
    ::raise(sig);
    return;
  }
  g_stop_signal = sig;
  static const char message[] = "\nminidl: interrupted: finishing the current step, then stopping (interrupt again to quit at once)\n";
  const ssize_t ignored = ::write(STDERR_FILENO, message, sizeof message - 1);
  (void)ignored;
}
}  // namespace

StopOnSignal::~StopOnSignal() { restore(); }

void StopOnSignal::on_train_begin(Trainer&) {
  if (g_installed) fail("StopOnSignal: another StopOnSignal is already active in this process");
  signal_ = 0;
  g_stop_signal = 0;
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  ::sigaction(SIGINT, &action, &g_previous_int);
  ::sigaction(SIGTERM, &action, &g_previous_term);
  g_installed = installed_ = true;
}

void StopOnSignal::on_step_end(Trainer& trainer, const StepResult&) {
  if (g_stop_signal == 0) return;
  signal_ = g_stop_signal;
  trainer.stop();
}

void StopOnSignal::on_epoch_end(Trainer& trainer, const EpochLogs&) { on_step_end(trainer, {}); }

void StopOnSignal::on_train_end(Trainer&) {
  if (g_stop_signal != 0) signal_ = g_stop_signal;
  restore();
}

void StopOnSignal::restore() {
  if (!installed_) return;
  ::sigaction(SIGINT, &g_previous_int, nullptr);
  ::sigaction(SIGTERM, &g_previous_term, nullptr);
  g_installed = installed_ = false;
}

int freeze_batch_norm_statistics(Module& model, bool frozen) {
  return for_each_module<BatchNormalization>(model, [frozen](BatchNormalization& bn) { bn.freeze_statistics(frozen); });
}

FreezeBatchNormStatistics::FreezeBatchNormStatistics(int last_epochs) : last_epochs_(last_epochs) {
  if (last_epochs < 0) fail("FreezeBatchNormStatistics: last_epochs must be >= 0, got ", last_epochs);
}

void FreezeBatchNormStatistics::on_epoch_begin(Trainer& trainer) {
  freeze_batch_norm_statistics(trainer.model(), trainer.epoch() > trainer.options().epochs - last_epochs_);
}

void AllReduceGradients::on_train_begin(Trainer& trainer) {
  parameters_ = trainer.model().parameters();
  total_ = 0;
  for (const Tensor& p : parameters_) total_ += p.numel();
}

void AllReduceGradients::on_after_backward(Trainer& trainer) {
  if (world_.size() < 2) return;
  if (parameters_.empty()) on_train_begin(trainer);  // steps outside fit()
  // Each gradient into the fused buffer, and where its average goes: a parameter without a gradient this step
  // contributes zeros and gets one. (grads_ keeps its capacity: nothing is allocated per step.)
  float* at = world_.reduction_buffer(total_);
  grads_.clear();
  for (Tensor& p : parameters_) {
    const int64_t n = p.numel();
    if (p.grad().defined()) {
      std::copy_n(p.grad().data(), n, at);
    } else {
      std::fill_n(at, n, 0.0f);
      p.impl().grad = Tensor::empty(p.shape()).impl_ptr();
    }
    grads_.emplace_back(p.grad().data(), static_cast<size_t>(n));
    at += n;
  }
  world_.sum_reduction_buffer(grads_, 1.0f / static_cast<float>(world_.size()));
}

void AllReduceGradients::on_epoch_end(Trainer& trainer, const EpochLogs& logs) {
  if (world_.size() < 2) return;
  if (parameters_.empty()) on_train_begin(trainer);
  // One number that differs when any bit of the parameters does.
  uint64_t hash = content_hash({});
  for (const Tensor& p : parameters_)
    hash = content_hash({reinterpret_cast<const uint8_t*>(p.data()), static_cast<size_t>(p.numel()) * sizeof(float)}, hash);
  if (!world_.agree(hash))
    fail("after epoch ", logs.epoch, " the ", world_.size(), " processes hold different parameters: they were "
         "started differently (other weights, seeds, data or settings: give every process the same; `minidl train` "
         "checks this before the first step), or this MPI's all-reduce does not give every process the same bits "
         "(then report the MPI library and its version)");
}

}  // namespace minidl
