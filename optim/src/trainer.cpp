// The Trainer: the one epoch loop in minidl, its callbacks, and training checkpoints that resume exactly.
#include <algorithm>
#include <chrono>
#include <cmath>

#include <omp.h>

#include "minidl/autograd.h"
#include "minidl/denormal.h"
#include "minidl/internal/text.h"
#include "minidl/distributed.h"
#include "minidl/layers.h"
#include "minidl/losses.h"
#include "minidl/ops.h"
#include "minidl/train.h"

namespace minidl {
namespace {

// Whether every optimizer parameter is one of the model's (then it can be named after them).
bool all_in_model(const Optimizer& optimizer, const NamedTensors& named) {
  for (const Tensor& p : optimizer.parameters())
    if (std::none_of(named.begin(), named.end(), [&](const auto& e) { return e.second.same(p); })) return false;
  return true;
}
}  // namespace

std::string first_non_finite(const NamedTensors& tensors) {
  for (const auto& [name, t] : tensors) {
    const float* p = t.data();
    for (int64_t i = 0; i < t.numel(); ++i)
      if (!std::isfinite(p[i]))
        return detail::concat("'", name, "' holds ", p[i], " (element ", i, " of ", t.numel(), ")");
  }
  return {};
}

namespace {
// Restores the calling thread's OpenMP count when run_epoch returns, however it returns.
class ThreadCountScope {
 public:
  ThreadCountScope() : previous_(omp_get_max_threads()) {}
  ~ThreadCountScope() { omp_set_num_threads(previous_); }
  ThreadCountScope(const ThreadCountScope&) = delete;
  ThreadCountScope& operator=(const ThreadCountScope&) = delete;

 private:
  int previous_;
};

bool all_finite(const Tensor& t) {
  const float* p = t.data();
  for (int64_t i = 0; i < t.numel(); ++i)
    if (!std::isfinite(p[i])) return false;
  return true;
}

float largest_magnitude(const NamedTensors& tensors) {
  float m = 0.0f;
  for (const auto& [name, t] : tensors)
    for (int64_t i = 0; i < t.numel(); ++i) m = std::max(m, std::fabs(t.data()[i]));
  return m;
}
}  // namespace

std::string find_non_finite(Module& model, const Tensor& x) {
  // Weights first; moving statistics last, since the failed step's own forward pass has already updated them.
  if (std::string weight = first_non_finite(model.named_parameters()); !weight.empty()) return "the model's weight " + weight;
  if (!all_finite(x)) return "the input batch";
  auto* sequential = dynamic_cast<Sequential*>(&model);
  if (!sequential) return {};
  // Replay the forward pass layer by layer, normalising with batch statistics as training does, in inference
  // mode: nothing is updated and no generator is drawn from.
  std::string found;
  {
    const NoGradGuard no_grad;
    const ModeGuard inference(model, false);
    const BatchStatisticsGuard statistics(model, true);
    const Shape& declared = sequential->input_shape();
    Tensor h = x;
    if (declared.rank() > 0) {
      std::vector<int64_t> batched{x.size(0)};
      batched.insert(batched.end(), declared.begin(), declared.end());
      h = reshape(x, batched);
    }
    for (const auto& layer : sequential->children()) {
      h = layer->forward(h);
      if (!all_finite(h)) {
        const NamedTensors params = layer->named_parameters();
        found = detail::concat("the output of layer '", layer->name(), "' (", layer->type_name(), "), whose input is finite",
                               params.empty() ? std::string() : detail::concat("; its weights reach |w| = ", largest_magnitude(params)),
                               " — a learning rate too large for this model diverges this way");
        break;
      }
    }
  }
  if (found.empty())
    if (std::string buffer = first_non_finite(model.named_buffers()); !buffer.empty()) found = "the model's buffer " + buffer;
  return found;
}

Trainer::Trainer(Module& model, Optimizer& optimizer, DataLoader& loader, TrainerOptions options)
    : model_(model), optimizer_(optimizer), loader_(loader), options_(std::move(options)) {
  if (options_.epochs < 0) fail("Trainer: epochs must be >= 0, got ", options_.epochs);
  if (options_.threads < 0 || options_.threads > 4096)
    fail("Trainer: threads must be 0 (time the counts and use the fastest) or 1 to 4096, got ", options_.threads);
  if (options_.max_steps < -1) fail("Trainer: max_steps must be >= 0 (or -1: no limit), got ", options_.max_steps);
  if (options_.validation_batch_size < 1)
    fail("Trainer: validation batch size must be >= 1, got ", options_.validation_batch_size);
  const Dataset& data = loader.dataset();
  if (!options_.loss) {
    options_.loss = default_loss(model, data.is_regression());
    // Beside a forward of the user's own the loss only says what validation reports: when the last layer implies
    // one the data cannot take (a Dense of logits, say), the data's kind decides.
    if (options_.forward && is_regression(*options_.loss) != data.is_regression())
      options_.loss = data.is_regression() ? Loss::mse : Loss::categorical_crossentropy;
  }
  if (!options_.forward) {
    check_loss(*options_.loss, model, data);
    if (*options_.loss == Loss::categorical_crossentropy && !loader.one_hot())
      fail("Trainer: the loss (categorical cross-entropy) needs one-hot targets: construct the DataLoader "
           "with one_hot = true, or give TrainerOptions::forward");
    options_.forward = loss_forward(*options_.loss, options_.label_smoothing);
  } else if (options_.label_smoothing != 0.0f) {
    fail("Trainer: label_smoothing applies to the default forward; a forward of your own smooths its own targets "
         "(smooth_labels)");
  }
  const LoaderOptions& lo = loader.options();
  if (loader.batches_per_epoch() == 0)
    fail("Trainer: the loader yields no batch: ", data.size(), " samples, batch size ", lo.batch_size,
         lo.drop_last ? " with drop_last" : "", " — use a smaller batch");
  const int64_t needed = model.min_training_batch({1, data.features()});
  const int64_t smallest = std::min(lo.batch_size, loader.last_batch_size());
  if (smallest < needed)
    fail("Trainer: ", smallest == lo.batch_size ? "every batch" : "the last batch of each epoch", " holds ", smallest,
         " sample", smallest == 1 ? "" : "s", " (", data.size(), " samples, batch size ", lo.batch_size,
         ") but the model needs ", needed, " to train (",
         needed > 2 ? "ghost batch normalisation needs a whole ghost batch" : "batch normalisation cannot normalise one sample", ")",
         smallest == lo.batch_size ? " — use a larger batch"
                                   : " — set drop_last, or min_batch_size = 2 to skip only a batch that small");
  if (const int64_t multiple = model.training_batch_multiple(); multiple > 1) {
    const int64_t odd = lo.batch_size % multiple ? lo.batch_size : loader.last_batch_size();
    if (odd % multiple)
      fail("Trainer: the model's ghost batch normalisation splits each training batch into ghost batches of ",
           multiple, " samples (virtual_batch_size), but ", odd == lo.batch_size ? "the batch size" : "the last batch of each epoch",
           " is ", odd, " (", data.size(), " samples, batch size ", lo.batch_size, ")",
           odd == lo.batch_size ? " — choose a batch size that is a multiple of it" : " — set drop_last (--drop-last)");
  }
  if (const Dataset* v = options_.validation) {
    if (v->features() != data.features())
      fail("Trainer: the validation data has samples of ", v->features(), " values (shape ", v->sample.str(),
           ") but the training data has ", data.features(), " (shape ", data.sample.str(), ")");
    check_evaluation(model, *v, options_.validation_batch_size, false, "the validation batch size");
    check_loss(*options_.loss, model, *v, "Trainer: the validation data");
  }
  if (all_in_model(optimizer, model.named_parameters())) optimizer.name_parameters(model.named_parameters());
  if (options_.threads == 0) tuner_ = std::make_unique<ThreadTuner>(options_.thread_tuning);  // checks its options
}

Trainer& Trainer::add_callback(std::shared_ptr<Callback> callback) {
  MINIDL_ASSERT(callback != nullptr);
  callbacks_.push_back(std::move(callback));
  return *this;
}

int Trainer::threads() const {
  if (options_.threads > 0) return options_.threads;
  return tuner_ ? tuner_->choice().threads : 0;
}

bool Trainer::finished() const {
  if (stop_requested_) return true;
  if (options_.max_steps >= 0 && steps_done() >= options_.max_steps) return true;
  const LoaderState s = loader_.state();
  const bool epoch_open = s.epoch > 0 && s.next_batch < loader_.batches_per_epoch();
  return s.epoch >= options_.epochs && !epoch_open;
}

std::vector<EpochLogs> Trainer::fit() {
  const FlushDenormalGuard flush;  // (denormal.h: subnormal floats cost ~100 cycles each)
  for (auto& c : callbacks_) c->on_train_begin(*this);
  if (resumed_) {
    const MetadataReader reader(*resumed_, resumed_source_);
    for (auto& c : callbacks_) c->load_state(*this, reader);
    resumed_.reset();
  }
  std::vector<EpochLogs> history;
  while (!finished()) history.push_back(run_epoch());
  for (auto& c : callbacks_) c->on_train_end(*this);
  return history;
}

StepResult Trainer::step(const Batch& batch) {
  model_.train();
  // Data parallelism: Dropout draws this slice's part of the global batch's mask.
  const int64_t rows = batch.x.size(0), shards = loader_.options().shards;
  if (shards > 1 && batch.global_rows > 0) slice_dropout(model_, batch.slice_begin, batch.global_rows);
  const ForwardResult f = options_.forward(model_, batch);
  const double loss = f.loss.item();
  if (!std::isfinite(loss) && options_.on_non_finite == OnNonFinite::stop) {
    // The diagnosis runs forward passes; with several processes those would meet the others' collectives out of
    // step, so there the error says only what this process saw (the caller ends the job).
    const bool alone = !options_.communicator || options_.communicator->size() == 1;
    const std::string where = alone ? find_non_finite(model_, batch.x) : std::string();
    throw NonFiniteLoss(detail::concat("step ", steps_done() + 1, " (epoch ", epoch(), "): the loss is ", loss, "; ",
                                       !alone          ? "on rank " + std::to_string(options_.communicator->rank()) +
                                                                 " (the layer is not located when several processes train)"
                                       : where.empty() ? "every layer's output is finite: the loss itself overflowed"
                                                       : "the first non-finite value: " + where,
                                       ". The step was not applied."),
                        steps_done() + 1);
  }
  optimizer_.zero_grad();
  // The gradient all-reduce averages N processes' gradients of their slices' mean losses: that is the global
  // batch's mean only when the slices are equal. A slice of n of the b rows weights its loss by n·N/b, so every
  // slice's gradient is on the scale of an equal slice's and the average is the global mean's gradient (the
  // synchronized BatchNormalization's sums of upstream gradients likewise). Equal slices multiply by nothing.
  if (shards > 1 && batch.global_rows > 0 && rows * shards != batch.global_rows)
    mul_scalar(f.loss, static_cast<float>(static_cast<double>(rows * shards) / static_cast<double>(batch.global_rows))).backward();
  else
    f.loss.backward();
  for (auto& c : callbacks_) c->on_after_backward(*this);
  optimizer_.step();
  StepResult result{loss, 0, batch.x.size(0)};
  if (batch.targets.defined()) result.abs_error = absolute_error_sum(batch.targets, f.prediction);  // regression
  else result.correct = count_correct(batch.labels, f.prediction);
  for (auto& c : callbacks_) c->on_step_end(*this, result);
  return result;
}

EpochLogs Trainer::run_epoch() {
  const FlushDenormalGuard flush;
  const LoaderState s = loader_.state();
  if (s.epoch == 0 || s.next_batch >= loader_.batches_per_epoch()) loader_.start_epoch();
  model_.on_epoch_begin(epoch(), options_.epochs);  // layers that follow the schedule (frozen statistics)
  for (auto& c : callbacks_) c->on_epoch_begin(*this);
  EpochLogs logs;
  logs.epoch = static_cast<int>(loader_.state().epoch);
  double loss_sum = 0.0, abs_error = 0.0;
  int64_t correct = 0, samples = 0;
  const ThreadCountScope restore;
  if (options_.threads == 0 && !tuner_) tuner_ = std::make_unique<ThreadTuner>(options_.thread_tuning);
  ThreadTuner* const tuner = options_.threads == 0 ? tuner_.get() : nullptr;
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  while (!stop_requested_ && (options_.max_steps < 0 || steps_done() < options_.max_steps)) {
    // The step is timed from the loader's gather (which runs on the step's threads too) to its callbacks' end.
    omp_set_num_threads(tuner ? tuner->next() : options_.threads);
    const auto step_start = Clock::now();
    if (!loader_.next(batch_)) break;
    const StepResult r = step(batch_);
    if (tuner && tuner->record(std::chrono::duration<double>(Clock::now() - step_start).count(), r.samples))
      for (auto& c : callbacks_) c->on_threads_chosen(*this, tuner->choice());
    loss_sum += r.loss * static_cast<double>(r.samples);
    correct += r.correct;
    samples += r.samples;
    abs_error += r.abs_error;
    ++logs.steps;
  }
  logs.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  // stop() in the middle of an epoch (an interrupt) ends training at once: no validation, no epoch end.
  if (stop_requested_ && loader_.state().next_batch < loader_.batches_per_epoch()) return logs;
  if (options_.communicator && options_.communicator->size() > 1) {  // every process's share of the epoch
    double totals[4] = {loss_sum, static_cast<double>(correct), static_cast<double>(samples), abs_error};
    options_.communicator->sum(totals, 4);
    loss_sum = totals[0], correct = static_cast<int64_t>(totals[1]), samples = static_cast<int64_t>(totals[2]);
    abs_error = totals[3];
  }
  const Dataset& data = loader_.dataset();
  logs.loss = samples ? loss_sum / static_cast<double>(samples) : 0.0;
  logs.regression = data.is_regression();
  logs.accuracy = samples && !logs.regression ? static_cast<double>(correct) / static_cast<double>(samples) : 0.0;
  logs.mae = samples && logs.regression ? abs_error / static_cast<double>(samples * data.outputs) : 0.0;
  if (options_.validation) {
    const Evaluation v = evaluate(model_, *options_.validation, options_.validation_batch_size, false, options_.loss,
                                  options_.communicator, options_.label_smoothing);
    logs.has_validation = true;
    logs.val_loss = v.loss;
    logs.val_accuracy = v.regression ? 0.0 : v.accuracy;
    logs.val_mae = v.mae, logs.val_rmse = v.rmse, logs.val_r2 = v.r2, logs.val_auc = v.auc;
  }
  for (auto& c : callbacks_) c->on_epoch_end(*this, logs);
  return logs;
}

void Trainer::save(const std::string& path, const Metadata& metadata) const {
  NamedTensors tensors = model_.state();
  for (const auto& [name, t] : optimizer_.state()) tensors.emplace_back(kOptimizerStatePrefix + name, t);
  Metadata m = metadata;
  for (const auto& [key, value] : optimizer_.config()) m[key] = value;
  const LoaderOptions& lo = loader_.options();
  const LoaderState s = loader_.state();
  m["format"] = kCheckpointFormat;
  m["trainer.step"] = std::to_string(steps_done());
  m["trainer.epochs"] = std::to_string(options_.epochs);
  m["trainer.max_steps"] = std::to_string(options_.max_steps);
  m["trainer.validation_batch_size"] = std::to_string(options_.validation_batch_size);
  m["loader.batch_size"] = std::to_string(lo.batch_size);
  m["loader.shuffle"] = lo.shuffle ? "1" : "0";
  m["loader.seed"] = std::to_string(lo.seed);
  m["loader.drop_last"] = lo.drop_last ? "1" : "0";
  m["loader.min_batch_size"] = std::to_string(lo.min_batch_size);
  m["loader.size"] = std::to_string(loader_.dataset().size());
  // The augmentation's draws follow from the seed and the position below; these say which draws they are.
  if (lo.augment.any()) {
    m["loader.augment_pad"] = std::to_string(lo.augment.pad);
    m["loader.augment_flip"] = lo.augment.flip ? "1" : "0";
  }
  m["loader.epoch"] = std::to_string(s.epoch);
  m["loader.next_batch"] = std::to_string(s.next_batch);
  m["loader.epoch_rng"] = words_text(s.epoch_rng);
  m["loader.rng"] = words_text(s.rng);
  for (const auto& [name, generator] : model_.named_generators()) m["rng." + name] = words_text(generator->state());
  for (const auto& c : callbacks_) c->save_state(*this, m);
  save_safetensors(path, tensors, m);
}

void Trainer::resume(Checkpoint checkpoint, const std::string& path) {
  upgrade_checkpoint(checkpoint, path);
  const std::string source = "checkpoint '" + path + "'";
  const MetadataReader m(checkpoint.metadata, source);
  if (!m.has("trainer.step"))
    fail(source, " holds a model but no training state (no 'trainer.step'): it cannot be resumed — start from its "
                 "weights instead");
  // The loader must draw the batches the checkpoint's position refers to.
  const LoaderOptions& lo = loader_.options();
  const auto same = [&](const std::string& key, int64_t mine, const char* what) {
    if (!m.has(key)) return;
    const int64_t theirs = m.integer(key, INT64_MIN, INT64_MAX);
    if (theirs != mine)
      fail(source, " was written with ", what, " ", theirs, " but the loader has ", mine,
           ": the saved data position would point elsewhere — use the checkpoint's value");
  };
  same("loader.batch_size", lo.batch_size, "batch size");
  same("loader.shuffle", lo.shuffle, "shuffle");
  same("loader.seed", static_cast<int64_t>(lo.seed), "loader seed");
  same("loader.drop_last", lo.drop_last, "drop_last");
  same("loader.min_batch_size", lo.min_batch_size, "min_batch_size");
  same("loader.size", loader_.dataset().size(), "a training set of size");
  // Absent: written without augmentation (or before it existed).
  const auto augment_key = [&](const std::string& key, int64_t mine, const char* what) {
    const int64_t theirs = m.has(key) ? m.integer(key, 0, int64_t{1} << 40) : 0;
    if (theirs != mine)
      fail(source, " was written with ", what, " ", theirs, " but the loader has ", mine,
           ": the resumed run would draw other images — use the checkpoint's augmentation");
  };
  augment_key("loader.augment_pad", lo.augment.pad, "augmentation padding");
  augment_key("loader.augment_flip", lo.augment.flip, "augmentation flip");
  const std::string optimizer_name = optimizer_.config().at("optimizer.name");
  if (m.text("optimizer.name") != optimizer_name)
    fail(source, " holds the state of optimizer '", m.text("optimizer.name"), "', not '", optimizer_name, "'");

  // Validate everything before changing anything: a failed resume leaves the trainer as it was.
  LoaderState state;
  state.epoch = m.integer("loader.epoch", 0, int64_t{1} << 40);
  state.next_batch = m.integer("loader.next_batch", 0, loader_.batches_per_epoch());
  state.epoch_rng = m.words("loader.epoch_rng");
  state.rng = m.words("loader.rng");
  const int64_t step = m.integer("trainer.step", 0, int64_t{1} << 53);
  std::vector<std::pair<Generator*, std::array<uint64_t, 4>>> generators;
  for (const auto& [name, generator] : model_.named_generators()) generators.emplace_back(generator, m.words("rng." + name));
  std::map<std::string, Tensor> slots;
  for (const auto& [name, t] : checkpoint.tensors)
    if (internal::starts_with(name, kOptimizerStatePrefix)) slots[name.substr(std::string(kOptimizerStatePrefix).size())] = t;

  // Each load checks everything before it changes anything; the model's and loader's are undone when a
  // later one fails, so a failed resume leaves the trainer as it was.
  const LoaderState previous_position = loader_.state();
  std::vector<Tensor> previous_weights;
  for (const auto& [name, t] : model_.state()) previous_weights.push_back(t.clone());
  try {
    loader_.set_state(state);
    model_.load_state(checkpoint.tensors);
    optimizer_.load_state(slots);
  } catch (const Error& e) {
    loader_.set_state(previous_position);
    const NamedTensors live = model_.state();
    for (size_t i = 0; i < live.size(); ++i) Tensor(live[i].second).copy_(previous_weights[i]);
    fail(source, ": ", e.what());
  }
  optimizer_.set_iterations(step);
  for (auto& [generator, words] : generators) generator->set_state(words);
  resumed_ = checkpoint.metadata;
  resumed_source_ = source;
}

}  // namespace minidl
